"""Commands on a finished run: ``neighbors``, ``assign``, ``animate``, ``explain``, ``probe``."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from ..errors import ImgclustError
from ._common import SeedOpt, app, friendly


@app.command()
@friendly
def neighbors(
    run_dir: Path = typer.Argument(..., help="Run directory."),
    image: Path = typer.Argument(..., help="Query image (inside or outside the run)."),
    top: int = typer.Option(10, "--top", "-n", help="Number of similar images to list."),
    cluster_k: Optional[int] = typer.Option(None, "--cluster", help="Also cluster the candidates into K groups "
                                                                    "and write a small report."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Report directory for --cluster "
                                                                "(default RUN_DIR/neighbors/<image name>)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or mps."),
    as_json: bool = typer.Option(False, "--json", help="Print the neighbours as JSON on stdout."),
    sweep: Optional[str] = typer.Option(None, "--sweep", help="Cluster the top-n candidates for each n (e.g. "
                                                              "50,100,...,1000) and chart ACC/ARI/NMI/top-5 "
                                                              "(labelled runs) and silhouette against n."),
):
    """List the run's images most similar to IMAGE (embedded with the run's encoder); optionally cluster them."""
    from rich.table import Table
    from rich.text import Text

    from ..explore.neighbors import cluster_candidates
    from ..explore.neighbors import neighbors as find_neighbors
    from ..progress import console

    if sweep is not None:
        return _print_sweep(run_dir, image, sweep, cluster_k, out, device)
    res = find_neighbors(run_dir, image, top=top, device=device)
    if as_json:
        import json

        typer.echo(json.dumps([{"rank": n.rank, "index": n.index, "path": n.path, "cluster": n.cluster,
                                "similarity": round(n.similarity, 6), "label": n.label} for n in res.items], indent=2))
    t = Table(title=Text(f"{len(res.items)} nearest neighbours of {image}"))
    for col, just in (("#", "right"), ("cosine", "right"), ("cluster", "right")):
        t.add_column(col, justify=just)
    t.add_column("path", overflow="fold")
    for n in res.items:
        t.add_row(str(n.rank), f"{n.similarity:.4f}", str(n.cluster), Text(n.path))
    con = console()
    if not as_json:
        con.print(t)
    if cluster_k is not None:
        out = out or run_dir / "neighbors" / image.stem
        sub = cluster_candidates(run_dir, res, cluster_k, out)
        con.print(f"clustered {len(res.items)} candidates into {sub.n_clusters} groups: "
                  f"report [bold]{out / 'report.html'}[/]", soft_wrap=True)


def _print_sweep(run_dir: Path, image: Path, sweep: str, k: Optional[int], out: Optional[Path], device: str):
    from rich.table import Table

    from ..explore.candidates import parse_sweep, sweep_candidates
    from ..progress import console

    res = sweep_candidates(run_dir, image, parse_sweep(sweep), k=k, out=out, device=device)
    keys = ["acc", "ari", "nmi", "top5", "silhouette"] if res.labelled else ["silhouette"]
    t = Table(title=f"top-n candidates of {image} clustered")
    for col in ["n", "k"] + keys:
        t.add_column(col, justify="right")
    for r in res.rows:
        t.add_row(str(r["n"]), str(r["k"]), *("-" if r[c] is None else f"{r[c]:.4f}" for c in keys))
    con = console()
    con.print(t)
    con.print(f"table: [bold]{res.csv}[/], [bold]{res.json}[/]  chart: [bold]{res.chart}[/]", soft_wrap=True)


@app.command()
@friendly
def assign(
    run_dir: Path = typer.Argument(..., help="Run directory to extend."),
    inputs: List[str] = typer.Argument(..., help="New image files, folders, globs, or a CSV/Parquet manifest."),
    labels: Optional[str] = typer.Option(None, "--labels", help="folder or manifest: record the new images' labels."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or mps."),
    embed_batch: int = typer.Option(64, "--embed-batch", help="Images per encoder forward pass."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Embedding cache (default: the run's)."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Do not read or write the embedding cache."),
    no_report: bool = typer.Option(False, "--no-report", help="Do not rebuild report.html."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
):
    """Put new images into the run's existing clusters (nearest centre) without re-clustering."""
    from collections import Counter

    from rich.table import Table
    from rich.text import Text

    from ..explore.assign import assign as assign_images
    from ..progress import console

    res = assign_images(run_dir, inputs, labels=labels, device=device, batch_size=embed_batch,
                        cache_dir=cache_dir, cache=not no_cache, progress=not quiet, report=not no_report)
    con = console()
    if len(res.paths):
        t = Table(title=Text(f"{len(res.paths)} image(s) assigned ({res.space})"))
        t.add_column("cluster", justify="right")
        t.add_column("confidence", justify="right")
        t.add_column("path", overflow="fold")
        for p, c, conf in list(zip(res.paths, res.clusters, res.confidence))[:50]:
            t.add_row("noise" if c == -1 else str(int(c)), f"{conf:.3f}", Text(p))
        con.print(t)
        if len(res.paths) > 50:
            counts = Counter(int(c) for c in res.clusters)
            con.print("per cluster: " + ", ".join(f"{c}: {n}" for c, n in sorted(counts.items())))
    else:
        con.print("[yellow]no new images assigned[/]")
    for s in res.skipped[:10]:
        con.print(Text(f"  skipped {s['path']}: {s['reason']}"))
    if len(res.skipped) > 10:
        con.print(f"  ... and {len(res.skipped) - 10} more")
    con.print(f"run now has {res.n_total} images: [bold]{run_dir / 'clusters.parquet'}[/]"
              + ("" if no_report else f"  report: [bold]{run_dir / 'report.html'}[/]"), soft_wrap=True)


@app.command()
@friendly
def animate(
    run_dir: Path = typer.Argument(..., help="Run directory."),
    method: str = typer.Option("kmeans", "--method", "-m", help="kmeans or kmedoids."),
    k: Optional[int] = typer.Option(None, "--k", "-k", help="Number of clusters (default: the run's)."),
    init: Optional[str] = typer.Option(None, "--init", help="Initialisation animated: random, k-means++ or maximin "
                                                            "(kmeans); random, k-medoids++ or build (kmedoids)."),
    max_iter: int = typer.Option(30, "--max-iter", help="Most iterations animated."),
    max_points: int = typer.Option(2000, "--max-points", help="Subsample to this many images."),
    fps: float = typer.Option(3.0, "--fps", help="Frames (iterations) per second."),
    seeds: int = typer.Option(5, "--seeds", help="Runs per initialisation in the comparison figure."),
    seed: int = SeedOpt,
    no_mp4: bool = typer.Option(False, "--no-mp4", help="Skip the MP4 even when ffmpeg is installed."),
):
    """GIF (and MP4 with ffmpeg) of k-means / k-medoids iterations on the map, and initialisations compared."""
    from ..explore.animate import animate_run
    from ..progress import console

    res = animate_run(run_dir, method, k=k, init=init, max_iter=max_iter, max_points=max_points, fps=fps,
                      seeds=seeds, random_state=seed, mp4=not no_mp4)
    con = console()
    state = "converged" if res.history.converged else "stopped at --max-iter"
    con.print(f"{method}: {res.n_iter} iterations ({state}); GIF [bold]{res.gif}[/]"
              + (f", MP4 [bold]{res.mp4}[/]" if res.mp4 else (", no MP4 (ffmpeg not found)" if not no_mp4 else "")),
              soft_wrap=True)
    for name, r in res.comparison.items():
        sil = [v for v in r["silhouette"] if v is not None]
        con.print(f"  init {name:12s} final inertia {sum(r['inertia']) / len(r['inertia']):.4g}"
                  + (f"  silhouette {sum(sil) / len(sil):.3f}" if sil else "")
                  + (f"  NMI {sum(r['nmi']) / len(r['nmi']):.3f}" if r.get("nmi") else "")
                  + f"  iterations {sum(r['n_iter']) / len(r['n_iter']):.1f}", highlight=False, soft_wrap=True)
    con.print(f"initialisations compared: [bold]{res.figure}[/]")


@app.command()
@friendly
def explain(
    run_dir: Path = typer.Argument(..., help="Run directory."),
    per_cluster: int = typer.Option(4, "--per-cluster", help="Prototypes explained per cluster."),
    clusters: Optional[str] = typer.Option(None, "--clusters", help="Comma-separated cluster ids (default: all)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or mps."),
):
    """Grad-CAM heatmaps of what makes each cluster's prototypes similar to its centre; shown in the report."""
    from ..explore.explain import explain_run
    from ..progress import console

    ids = None
    if clusters:
        try:
            ids = [int(c) for c in clusters.split(",") if c.strip()]
        except ValueError:
            raise ImgclustError(f"--clusters must be comma-separated integers (got {clusters!r})") from None
    res = explain_run(run_dir, per_cluster=per_cluster, clusters=ids, device=device)
    con = console()
    con.print(f"{res.method}: {len(res.items)} overlays in [bold]{res.out_dir}[/]; "
              f"report: [bold]{run_dir / 'report.html'}[/]", soft_wrap=True)


@app.command()
@friendly
def probe(
    run_dir: Path = typer.Argument(..., help="A labelled run directory."),
    cv: int = typer.Option(5, "--cv", help="Cross-validation folds."),
    seed: int = SeedOpt,
    no_baseline: bool = typer.Option(False, "--no-baseline", help="Skip the k-means baseline."),
):
    """Linear probe: supervised upper reference (logistic regression, cross-validated) next to the clustering."""
    import json

    from rich.table import Table

    from ..explore.probe import probe_run
    from ..progress import console

    res = probe_run(run_dir, cv=cv, random_state=seed, baseline=not no_baseline)
    m = json.loads((run_dir / "metrics.json").read_text())
    t = Table(title=f"{run_dir}: clustering vs supervised reference")
    for col in ("", "ACC", "NMI", "ARI"):
        t.add_column(col, justify="right" if col else "left")

    def row(name, d):
        def f(key):
            v = d.get(key)
            std = d.get(f"{key}_std")
            return "-" if v is None else f"{v:.4f}" + (f" ± {std:.4f}" if std is not None else "")
        t.add_row(name, f("acc"), f("nmi"), f("ari"))

    if "external" in m:
        row(f"this run ({m.get('n_clusters')} clusters)", m["external"])
    if "kmeans_baseline" in res:
        row("k-means baseline (10 inits x 3 seeds)", res["kmeans_baseline"])
    row(f"linear probe ({res['linear_probe']['cv']}-fold)", res["linear_probe"])
    console().print(t)
