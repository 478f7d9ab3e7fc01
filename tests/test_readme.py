"""The README and the CLI agree: every command has a documented Python twin, every example line names
real commands and options, and the README's main chain works through the installed console script."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import typer

import imgclust
from conftest import write_image_folder
from imgclust.cli import app

README = Path(__file__).resolve().parents[1] / "README.md"
TEXT = README.read_text(encoding="utf-8")
ROOT = typer.main.get_command(app)


def _commands(group, prefix: str = "") -> dict:
    """Every leaf command by its full name (``run``, ``datasets prepare``).

    Duck-typed: Typer ships its own copy of click, so ``click.Group`` is not its base class.
    """
    out = {}
    for name, cmd in group.commands.items():
        full = f"{prefix}{name}"
        out.update(_commands(cmd, f"{full} ") if hasattr(cmd, "commands") else {full: cmd})
    return out


COMMANDS = _commands(ROOT)


def _readme_command_lines() -> list[str]:
    """``imgclust ...`` lines of the README's shell blocks, continuation lines joined."""
    lines = []
    for block in re.findall(r"```(?:bash|sh|shell)\n(.*?)```", TEXT, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.strip().removeprefix("$ ")
            if line.startswith("imgclust "):
                lines.append(line)
    return lines


def _resolve(tokens: list[str]) -> tuple[str, list[str]]:
    """Split argv into the (possibly nested) command name and the rest."""
    group, name, i = ROOT, [], 0
    while hasattr(group, "commands") and i < len(tokens) and tokens[i] in group.commands:
        name.append(tokens[i])
        group = group.commands[tokens[i]]
        i += 1
    return " ".join(name), tokens[i:]


def test_the_readme_has_command_lines_to_check():
    assert len(_readme_command_lines()) >= 20


@pytest.mark.parametrize("line", _readme_command_lines())
def test_readme_command_lines_name_real_commands_and_options(line):
    tokens = shlex.split(line, comments=True)[1:]
    name, rest = _resolve(tokens)
    assert name in COMMANDS, f"README line uses an unknown command: {line}"
    cmd = COMMANDS[name]
    known = {o for p in cmd.params for o in (*p.opts, *p.secondary_opts)} | {"--help"}
    used = {t.split("=", 1)[0] for t in rest if t.startswith("--")}
    assert used <= known, f"{line}: unknown option(s) {sorted(used - known)} for `imgclust {name}`"


def _twin_table() -> dict[str, str]:
    """README's twin table: CLI command name -> the ``imgclust.<function>`` named first in the row."""
    a = TEXT.index("## Python API")
    b = TEXT.index("\n## ", a + 1)
    rows = {}
    for cli_cell, py_cell in re.findall(r"^\| `imgclust ([^`]+)` \| ([^|]+)\|", TEXT[a:b], flags=re.M):
        name, _ = _resolve(shlex.split(cli_cell))
        m = re.search(r"imgclust\.(\w+)\(", py_cell)
        assert m, f"no Python twin named for `imgclust {cli_cell}`"
        rows[name] = m.group(1)
    return rows


def test_every_command_has_a_documented_python_twin_that_resolves():
    rows = _twin_table()
    assert set(rows) == set(COMMANDS), f"undocumented: {set(COMMANDS) - set(rows)}; stale: {set(rows) - set(COMMANDS)}"
    for fn in rows.values():
        assert fn in imgclust._LAZY and callable(getattr(imgclust, fn)), fn


def test_the_readme_chain_through_the_console_script(tmp_path):
    """run -> cluster --from -> report -> neighbors -> probe, as a user types them."""
    exe = Path(sys.executable).with_name("imgclust")
    data = tmp_path / "images"
    write_image_folder(data, per_class=5)
    env = {**os.environ, "COLUMNS": "250", "OMP_NUM_THREADS": "1"}
    common = ["--encoder", "pixels", "--map", "pca", "--quiet", "--cache-dir", str(tmp_path / "cache")]

    def sh(*args):
        proc = subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True, timeout=300, env=env)
        assert proc.returncode == 0, proc.stderr + proc.stdout
        assert "Traceback" not in proc.stderr
        return proc.stdout

    run, re_run = tmp_path / "run", tmp_path / "kmedoids"
    sh("run", data, "--labels", "folder", "--k", "3", "--out", run, *common)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["n_images"] == 15 and set(metrics["external"]) >= {"acc", "nmi", "ari"}
    sh("cluster", "--from", run, "--method", "kmedoids", "--k", "3", "--out", re_run, "--quiet")
    assert (re_run / "clusters.parquet").exists()
    (re_run / "report.html").unlink(missing_ok=True)
    sh("report", re_run)
    assert (re_run / "report.html").stat().st_size > 1000
    query = sorted(data.rglob("*.png"))[0]
    hits = json.loads(sh("neighbors", run, query, "--top", "3", "--json"))
    assert len(hits) == 3 and Path(hits[0]["path"]).name == query.name  # an image is its own nearest
    sh("probe", run)
    assert "probe" in json.loads((run / "metrics.json").read_text())
