"""Curation commands on a finished run: ``duplicates`` and ``outliers``."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.text import Text

from ._common import app, friendly


@app.command()
@friendly
def duplicates(
    run_dir: Path = typer.Argument(..., help="Run directory."),
    threshold: float = typer.Option(0.9, "--threshold", "-t", help="Cosine similarity at or above which two "
                                                                     "images are near duplicates."),
    k: int = typer.Option(10, "--k", "-k", help="Nearest neighbours searched per image."),
    keep: str = typer.Option("central", "--keep", help="Representative kept per group: central (most similar to "
                                                       "the rest), largest (most pixels) or first."),
    exact_only: bool = typer.Option(False, "--exact-only", help="Only byte-identical files (content hash)."),
    phash: bool = typer.Option(True, "--phash/--no-phash", help="Also link images by a perceptual hash of their "
                               "pixels (finds heavy JPEG re-encodes and downscales the cosine misses)."),
    show: int = typer.Option(10, "--show", help="Groups listed here (all are in duplicates.parquet)."),
    no_report: bool = typer.Option(False, "--no-report", help="Do not rebuild report.html."),
):
    """Exact (same content hash) and near (cosine >= --threshold, or pHash) duplicate groups, one kept per group."""
    from rich.table import Table

    from ..explore.curate import find_duplicates
    from ..progress import console

    res = find_duplicates(run_dir, threshold=threshold, k=k, keep=keep, exact_only=exact_only, phash=phash,
                          report=not no_report)
    con = console()
    by_hash = " or by pHash" if phash and not exact_only else ""
    n_exact = sum(g["kind"] == "exact" for g in res.groups)
    con.print(f"{res.n_images} images: {res.n_groups} duplicate groups ({n_exact} exact, {res.n_groups - n_exact} "
              f"near at cosine >= {threshold:g}{by_hash}); {res.n_removable} removable keeping one per group "
              f"({res.seconds:.2f} s)", highlight=False, soft_wrap=True)
    if res.by_threshold:
        con.print("groups per threshold: " + ", ".join(f">= {t:g}: {c}" for t, c in res.by_threshold.items()),
                  highlight=False, soft_wrap=True)
    if res.groups and show > 0:
        cols = res.table.to_pydict()
        t = Table(title=f"largest {min(show, res.n_groups)} groups")
        for col, just in (("group", "right"), ("kind", "left"), ("size", "right"), ("min cos", "right")):
            t.add_column(col, justify=just)
        t.add_column("representative (kept)", overflow="fold")
        for g in res.groups[:show]:
            t.add_row(str(g["group"]), g["kind"], str(g["size"]), f"{g['min_similarity']:.4f}",
                      Text(cols["path"][cols["index"].index(g["representative"])]))
        con.print(t)
    con.print(f"groups: [bold]{res.path}[/]  removal list: [bold]{run_dir / 'duplicates_remove.txt'}[/]"
              + ("" if no_report else f"  report: [bold]{run_dir / 'report.html'}[/]"), soft_wrap=True)


@app.command()
@friendly
def outliers(
    run_dir: Path = typer.Argument(..., help="Run directory."),
    k: int = typer.Option(10, "--k", "-k", help="Nearest neighbours per image."),
    method: str = typer.Option("lof", "--method", "-m", help="Ranking: lof (local outlier factor) or knn "
                                                              "(mean cosine distance to the k neighbours)."),
    contamination: float = typer.Option(0.01, "--contamination", help="Share of images flagged as outliers."),
    top: int = typer.Option(15, "--top", "-n", help="Outliers listed here (all are in outliers.parquet)."),
    no_report: bool = typer.Option(False, "--no-report", help="Do not rebuild report.html."),
):
    """Rank every image by kNN distance / local density; flag the top --contamination share."""
    from rich.table import Table

    from ..explore.curate import find_outliers
    from ..progress import console

    res = find_outliers(run_dir, k=k, method=method, contamination=contamination, report=not no_report)
    con = console()
    cols = res.table.to_pydict()
    t = Table(title=f"top {min(top, len(cols['rank']))} of {len(cols['rank'])} by {method} "
                    f"({res.n_flagged} flagged, {res.seconds:.2f} s)")
    for col in ("#", "lof", "knn dist", "cluster"):
        t.add_column(col, justify="right")
    t.add_column("path", overflow="fold")
    for j in range(min(top, len(cols["rank"]))):
        t.add_row(str(cols["rank"][j]), f"{cols['lof'][j]:.3f}", f"{cols['knn_distance'][j]:.4f}",
                  str(cols["cluster"][j]), Text(cols["path"][j]))
    con.print(t)
    con.print(f"scores: [bold]{res.path}[/]" + ("" if no_report else f"  report: [bold]{run_dir / 'report.html'}[/]"),
              soft_wrap=True)
