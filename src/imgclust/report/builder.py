"""Build ``report.html`` from a run directory: plots inlined, scores, galleries; offline."""

from __future__ import annotations

import base64
import json
from pathlib import Path

__all__ = ["build_report"]


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def build_report(run_dir) -> Path:
    """(Re)build ``run_dir/report.html``; every user string is escaped by Jinja2's autoescape."""
    from jinja2 import Environment, PackageLoader, select_autoescape

    from ..api import load_run
    from ..store import atomic_write_text

    run_dir = Path(run_dir)
    run = load_run(run_dir)
    plots = {p.stem: _data_uri(p) for p in sorted((run_dir / "plots").glob("*.png"))}
    env = Environment(loader=PackageLoader("imgclust", "report"), autoescape=select_autoescape(["html"]))
    html = env.get_template("template.html").render(
        metrics=run["metrics"], run=run["run"], plots=plots,
        config_json=json.dumps(run["run"].get("config", {}), indent=2, default=str))
    out = run_dir / "report.html"
    atomic_write_text(out, html)
    return out
