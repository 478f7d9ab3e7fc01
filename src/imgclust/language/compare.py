"""Compare encoders on the same images: same reducer, same clusterer, one row of scores each.

This is the ROCOv2 seed's experiment as one call: raw pixels vs a pretrained CLIP vs a
fine-tuned ``hf:DIR`` (or any registered encoders), clustered identically and scored with the
internal scores (silhouette, Calinski-Harabasz, Davies-Bouldin, in each encoder's own reduced
space) and, when labels are known, the external ones (accuracy, NMI, ARI, top-5 neighbour
accuracy). Each encoder also gets a normal run directory, so ``imgclust name`` / ``search`` /
``report`` work on it afterwards.

Output directory layout::

    OUT/compare.json        {"config": ..., "rows": [...], "best": {...}, "columns": [...]}
    OUT/compare.md          the rows as a Markdown table
    OUT/<encoder-slug>/     one run directory per encoder (with a copy of compare.json)
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any, Sequence

from ..errors import ImgclustError

__all__ = ["compare_encoders", "compare_markdown", "encoder_slug", "COLUMNS"]

# (key, header, higher is better?) in table order; external scores only with labels.
COLUMNS: list[tuple[str, str, bool | None]] = [
    ("encoder", "encoder", None),
    ("dim", "dim", None),
    ("n_clusters", "clusters", None),
    ("silhouette", "silhouette", True),
    ("calinski_harabasz", "Calinski-Harabasz", True),
    ("davies_bouldin", "Davies-Bouldin", False),
    ("acc", "accuracy", True),
    ("nmi", "NMI", True),
    ("ari", "ARI", True),
    ("top5_neighbor_acc", "top-5 neighbour acc", True),
    ("images_per_s", "img/s", None),
]
_SCORES = ("silhouette", "calinski_harabasz", "davies_bouldin")
_EXTERNAL = ("acc", "nmi", "ari", "top5_neighbor_acc")


def encoder_slug(name: str) -> str:
    """A folder name for an encoder: ``hf:/x/my-model`` -> ``hf-my-model``."""
    if name.startswith("hf:"):
        tail = Path(name[3:].rstrip("/\\")).name or "model"
        name = f"hf-{tail}"
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.")
    return slug or "encoder"


def _fmt(value: Any, key: str) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if key == "calinski_harabasz" or abs(value) >= 1000:
            return f"{value:,.1f}"
        return f"{value:.4f}" if key != "images_per_s" else f"{value:.1f}"
    return str(value)


def compare_markdown(rows: Sequence[dict], title: str | None = None) -> str:
    """The rows as a Markdown table; the best value of each score is in bold; failures listed."""
    ok = [r for r in rows if not r.get("error")]
    keys = [c for c in COLUMNS if any(r.get(c[0]) is not None for r in ok) or c[0] == "encoder"]
    best: dict[str, Any] = {}
    for key, _, higher in keys:
        vals = [r[key] for r in ok if isinstance(r.get(key), (int, float))]
        if higher is not None and len(vals) > 1:
            best[key] = max(vals) if higher else min(vals)
    lines = [f"## {title}", ""] if title else []
    lines.append("| " + " | ".join(h + ("" if hi is None else (" ↑" if hi else " ↓")) for _, h, hi in keys) + " |")
    lines.append("|" + "|".join("---" if i == 0 else "---:" for i in range(len(keys))) + "|")
    for r in ok:
        cells = []
        for key, _, _ in keys:
            text = _fmt(r.get(key), key)
            std = r.get(f"{key}_std")
            if std is not None:
                text += f" ± {_fmt(float(std), key)}"
            cells.append(f"**{text}**" if key in best and r.get(key) == best[key] else text)
        lines.append("| " + " | ".join(cells) + " |")
    failed = [r for r in rows if r.get("error")]
    if failed:
        lines += ["", "Not compared:"]
        lines += [f"- `{r['encoder']}`: {r['error']}" for r in failed]
    return "\n".join(lines) + "\n"


def _row(name: str, result, run_dir: Path | None) -> dict:
    m = result.metrics
    row: dict[str, Any] = {
        "encoder": name,
        "dim": int(result.embeddings.shape[1]),
        "n_images": int(m["n_images"]),
        "n_clusters": int(m["n_clusters"]),
        "k": result.config.get("k"),
        "internal_space": m.get("internal_space"),
    }
    for key in _SCORES:
        row[key] = m["internal"].get(key)
        if f"{key}_std" in m["internal"]:
            row[f"{key}_std"] = m["internal"][f"{key}_std"]
    ext = m.get("external") or {}
    for key in _EXTERNAL:
        if key in ext:
            row[key] = ext[key]
            if f"{key}_std" in ext:
                row[f"{key}_std"] = ext[f"{key}_std"]
    row["embed_seconds"] = round(float(result.timings.get("embed", 0.0)), 3)
    row["images_per_s"] = round(float(result.timings.get("embed_images_per_s", 0.0)), 2) or None
    row["n_skipped"] = len(m.get("skipped", []))
    row["run_dir"] = str(run_dir) if run_dir is not None else None
    return row


def compare_encoders(inputs: str | os.PathLike | Sequence[str | os.PathLike], encoders: Sequence[str] | str = (
                     "pixels", "efficientnet-lite0"), *, reduce: str = "pca", n_components: int = 50,
                     map: str = "pca", method: str = "kmeans", k: int | str | None = 10, labels: str | None = None,
                     seeds: int = 1, random_state: int = 0, device: str = "auto", batch_size: int = 64,
                     cache_dir: str | os.PathLike | None = None, out: str | os.PathLike | None = "runs/compare",
                     plots: bool = False, report: bool = True, progress: bool = False,
                     keep_going: bool = True) -> list[dict]:
    """Cluster the same images with several encoders and score each the same way.

    Args:
        inputs: Files, folders, globs or a manifest (as for ``imgclust run``).
        encoders: Encoder names (a list or a comma-separated string), e.g.
            ``pixels,clip-vit-b-32,hf:runs/ft``.
        reduce: Reducer before clustering (shared).
        n_components: Clustering input dimension when reducing (shared).
        map: 2-D map reducer of each run (``pca`` is the cheapest).
        method: Clusterer (shared).
        k: Number of clusters (shared), ``"auto"`` (each encoder sweeps its own) or ``None``.
        labels: ``folder`` or ``manifest`` for the external scores.
        seeds: Repeat clustering with N seeds; scores get ``_std``.
        random_state: Base seed (shared).
        device: ``auto``, ``cpu``, ``cuda`` or ``mps``.
        batch_size: Images per encoder forward pass.
        cache_dir: Embedding cache (shared; each encoder has its own fingerprint).
        out: Output directory (``compare.json``, ``compare.md``, one run dir per encoder);
            ``None`` writes nothing.
        plots: Write each run's PNG plots.
        report: Write each run's ``report.html`` (which shows the comparison).
        progress: Progress bars.
        keep_going: An encoder that fails (e.g. weights not available offline) becomes a row
            with an ``error`` instead of stopping the comparison.

    Returns:
        One dict per encoder, in the given order: ``encoder``, ``dim``, ``n_images``,
        ``n_clusters``, ``k``, the internal scores, the external scores when labels are known,
        ``embed_seconds``, ``images_per_s``, ``run_dir`` - or ``encoder`` and ``error``.

    Raises:
        ImgclustError: No encoders, duplicates, or every encoder failed.
    """
    from ..analyze import check_k, validate_options
    from ..pipeline.sources import discover

    names, slugs = _encoder_names(encoders)
    # Problems every encoder would hit (inputs, options) fail here, before any embedding.
    n_images = len(discover(inputs, labels=labels))
    validate_options(method, reduce, map)
    if isinstance(k, int):
        check_k(method, k, n_images, str(method))
    out_dir = Path(out) if out is not None else None
    rows: list[dict] = []
    t0 = time.perf_counter()
    for name, slug in zip(names, slugs):
        run_dir = out_dir / slug if out_dir is not None else None
        try:
            result = _cluster_with(name, inputs, run_dir, reduce=reduce, n_components=n_components, map=map,
                                   method=method, k=k, labels=labels, seeds=seeds, random_state=random_state,
                                   device=device, batch_size=batch_size, cache_dir=cache_dir, plots=plots,
                                   progress=progress)
        except ImgclustError as exc:
            if not keep_going:
                raise
            rows.append({"encoder": name, "error": str(exc)})
            continue
        rows.append(_row(name, result, run_dir))
    if all(r.get("error") for r in rows):
        raise ImgclustError("no encoder could be compared: " + "; ".join(f"{r['encoder']}: {r['error']}" for r in rows))
    if out_dir is not None:
        config = {"inputs": [str(i) for i in ([inputs] if isinstance(inputs, (str, os.PathLike)) else inputs)],
                  "encoders": names, "reduce": reduce, "n_components": n_components, "map": map,
                  "method": method, "k": k, "labels": labels, "seeds": seeds, "random_state": random_state}
        _write_comparison(out_dir, config, rows, round(time.perf_counter() - t0, 3), report=report)
    return rows


def _encoder_names(encoders: Sequence[str] | str) -> tuple[list[str], list[str]]:
    """``(names, folder slugs)`` of a list or comma-separated string; no empty list, no duplicates."""
    names = [e.strip() for e in (encoders.split(",") if isinstance(encoders, str) else encoders) if e.strip()]
    if not names:
        raise ImgclustError("--encoders needs at least one encoder name")
    if len(set(names)) != len(names):
        raise ImgclustError(f"--encoders lists an encoder twice: {', '.join(names)}")
    slugs = [encoder_slug(n) for n in names]
    for i, s in enumerate(slugs):  # two hf: dirs with the same folder name
        if slugs.count(s) > 1:
            slugs[i] = f"{s}-{i + 1}"
    return names, slugs


def _write_comparison(out_dir: Path, config: dict, rows: list[dict], seconds: float, report: bool) -> None:
    """``compare.json`` and ``compare.md`` in ``out_dir``; a copy of the JSON (and the report) per run."""
    from .._io import atomic_write_text, jsonable

    payload = jsonable({
        "config": config,
        "columns": [{"key": key, "header": h, "higher_is_better": hi} for key, h, hi in COLUMNS],
        "rows": rows,
        "best": _best(rows),
        "seconds": seconds,
    })
    out_dir.mkdir(parents=True, exist_ok=True)
    text = json.dumps(payload, indent=2)
    atomic_write_text(out_dir / "compare.json", text)
    atomic_write_text(out_dir / "compare.md", compare_markdown(rows, title="Encoder comparison"))
    for r in rows:
        if r.get("run_dir"):
            atomic_write_text(Path(r["run_dir"]) / "compare.json", text)
            if report:
                from ..report import build_report

                build_report(r["run_dir"])


def _cluster_with(encoder: str, inputs, run_dir, *, labels, batch_size, cache_dir, device, plots, progress,
                  **cluster_args):
    """One encoder's run: embed (through the cache), cluster and score, write its run directory."""
    from ..analyze import cluster_embeddings
    from ..pipeline.embed import embed_images
    from ..report import write_run
    from ..rundir import run_config

    emb = embed_images(inputs, encoder=encoder, labels=labels, device=device, batch_size=batch_size,
                       cache_dir=cache_dir, progress=progress)
    config = run_config(inputs, emb, labels=labels, batch_size=batch_size, cache_dir=cache_dir,
                        k=cluster_args.get("k"))
    result = cluster_embeddings(emb.embeddings, emb.records, hashes=emb.hashes, skipped=emb.skipped,
                                config=config, progress=progress, **cluster_args)
    result.timings = {**emb.timings(), **result.timings}
    if run_dir is not None:
        write_run(result, run_dir, plots=plots, report=False)
    return result


def _best(rows: Sequence[dict]) -> dict[str, str]:
    """Score key -> the encoder with the best value (only scores with >1 value)."""
    ok = [r for r in rows if not r.get("error")]
    out = {}
    for key, _, higher in COLUMNS:
        vals = [(r[key], r["encoder"]) for r in ok if isinstance(r.get(key), (int, float))]
        if higher is None or len(vals) < 2:
            continue
        out[key] = (max(vals) if higher else min(vals))[1]
    return out
