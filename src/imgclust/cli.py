"""The ``imgclust`` command line: parses, calls the API, prints. No logic of its own."""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path
from typing import Callable, List, Optional

import typer

from .errors import ImgclustError

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode="rich",
                  help="Cluster image collections with pretrained vision encoders, score the clusters, show them.")


def _err(msg: str) -> None:
    from .progress import console

    console().print(f"[bold red]error:[/] {msg}", highlight=False, markup=True, soft_wrap=True)


def friendly(fn: Callable) -> Callable:
    """User errors -> one line on stderr and a non-zero exit; never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ImgclustError as exc:
            _err(str(exc))
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            _err("interrupted; embeddings computed so far are cached, re-run to resume")
            raise typer.Exit(130) from None
        except MemoryError:
            _err("out of memory: try a smaller --embed-batch, --reduce pca, or fewer images")
            raise typer.Exit(3) from None

    return wrapper


def _parse_k(k: str) -> int | str | None:
    if k in ("auto", "none"):
        return None if k == "none" else "auto"
    try:
        return int(k)
    except ValueError:
        raise ImgclustError(f"--k must be a number, 'auto' or 'none' (got {k!r})") from None


def _method_params(epochs, batch_size, lr) -> dict:
    return {k: v for k, v in {"epochs": epochs, "batch_size": batch_size, "lr": lr}.items() if v is not None}


def _summary(result, out: Path | None) -> None:
    from rich.table import Table

    from .progress import console

    con = console()
    m = result.metrics
    t = Table(title=f"{m['n_images']} images -> {m['n_clusters']} clusters"
                    + (f", {m['n_noise']} noise" if m.get("n_noise") else ""), show_header=True)
    t.add_column("score")
    t.add_column("value", justify="right")

    def fmt(d, key):
        v = d.get(key)
        if v is None:
            return "-"
        s = f"{v:.4f}" if abs(v) < 1000 else f"{v:,.1f}"
        std = d.get(f"{key}_std")
        return s + (f" ± {std:.4f}" if std is not None else "")

    for key in ("silhouette", "calinski_harabasz", "davies_bouldin"):
        t.add_row(key, fmt(m["internal"], key))
    for key in ("acc", "nmi", "ari", "top5_neighbor_acc"):
        if "external" in m and key in m["external"]:
            t.add_row(key, fmt(m["external"], key))
    con.print(t)
    if m.get("skipped"):
        con.print(f"[yellow]skipped {len(m['skipped'])} file(s):[/]")
        for s in m["skipped"][:10]:
            con.print(f"  {s['path']}: {s['reason']}", highlight=False, markup=False)
        if len(m["skipped"]) > 10:
            con.print(f"  ... and {len(m['skipped']) - 10} more (see metrics.json)")
    if "embed_images_per_s" in result.timings and result.timings.get("n_encoded"):
        con.print(f"embedded {result.timings['n_encoded']} new image(s) at "
                  f"{result.timings['embed_images_per_s']:.1f} img/s; {result.timings.get('n_cached', 0)} from cache")
    if out is not None:
        con.print(f"run directory: [bold]{out}[/]  report: [bold]{out / 'report.html'}[/]")


EncoderOpt = typer.Option("efficientnet-lite0", "--encoder", "-e",
                          help="Encoder name (see `imgclust encoders`) or hf:<hub id or local dir>.")
ReduceOpt = typer.Option("pca", "--reduce", help="Reduce before clustering: umap, pca, tsne or none.")
DimsOpt = typer.Option(50, "--dims", help="Dimensions of the clustering input when reducing.")
MapOpt = typer.Option("auto", "--map", help="2-D map: auto (umap), umap, tsne or pca.")
MethodOpt = typer.Option("kmeans", "--method", "-m",
                         help="kmeans, kmedoids, hdbscan, agglomerative, spectral, scan or temi.")
KOpt = typer.Option("10", "--k", "-k", help="Number of clusters, 'auto' (sweep, pick by silhouette) or 'none'.")
SeedsOpt = typer.Option(1, "--seeds", help="Repeat clustering with N seeds; report mean and std.")
SeedOpt = typer.Option(0, "--seed", help="Base random seed.")
EpochsOpt = typer.Option(None, "--epochs", help="Training epochs for scan/temi heads.")
BatchOpt = typer.Option(None, "--batch-size", help="Training batch size for scan/temi heads.")
LrOpt = typer.Option(None, "--lr", help="Learning rate for scan/temi heads.")


@app.command()
@friendly
def run(
    inputs: List[str] = typer.Argument(..., help="Image files, folders, globs, or a CSV/Parquet manifest."),
    encoder: str = EncoderOpt,
    reduce: str = ReduceOpt,
    dims: int = DimsOpt,
    map: str = MapOpt,
    method: str = MethodOpt,
    k: str = KOpt,
    labels: Optional[str] = typer.Option(None, "--labels", help="folder (class = parent folder) or manifest."),
    seeds: int = SeedsOpt,
    seed: int = SeedOpt,
    out: Path = typer.Option(Path("runs/latest"), "--out", "-o", help="Run directory to write."),
    device: str = typer.Option("auto", "--device", help="auto (CUDA, then MPS, then CPU), cpu, cuda or mps."),
    embed_batch: int = typer.Option(64, "--embed-batch", help="Images per encoder forward pass."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Embedding cache (default ~/.cache/imgclust)."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Do not read or write the embedding cache."),
    epochs: Optional[int] = EpochsOpt,
    batch_size: Optional[int] = BatchOpt,
    lr: Optional[float] = LrOpt,
    no_report: bool = typer.Option(False, "--no-report", help="Skip plots and report.html."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
):
    """Embed, cluster and score images; write a run directory with plots and report.html."""
    from .api import cluster_images

    result = cluster_images(inputs, encoder=encoder, reduce=reduce, n_components=dims, map=map, method=method,
                            k=_parse_k(k), labels=labels, seeds=seeds, random_state=seed, device=device,
                            batch_size=embed_batch, cache_dir=cache_dir, cache=not no_cache, out=out,
                            plots=not no_report, report=not no_report,
                            method_params=_method_params(epochs, batch_size, lr), progress=not quiet)
    _summary(result, out)


@app.command()
@friendly
def cluster(
    from_: Path = typer.Option(..., "--from", help="An existing run directory."),
    method: str = MethodOpt,
    k: str = KOpt,
    reduce: Optional[str] = typer.Option(None, "--reduce", help="Override the run's reducer."),
    dims: Optional[int] = typer.Option(None, "--dims", help="Override the run's clustering dimensions."),
    seeds: int = SeedsOpt,
    seed: int = SeedOpt,
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="New run directory (default: RUN_DIR-METHOD)."),
    epochs: Optional[int] = EpochsOpt,
    batch_size: Optional[int] = BatchOpt,
    lr: Optional[float] = LrOpt,
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
):
    """Re-cluster a run from its saved embeddings, without touching the images."""
    from .api import recluster

    out = out or from_.with_name(f"{from_.name}-{method}")
    result = recluster(from_, method=method, k=_parse_k(k), reduce=reduce, n_components=dims, seeds=seeds,
                       random_state=seed, out=out, method_params=_method_params(epochs, batch_size, lr),
                       progress=not quiet)
    _summary(result, out)


@app.command()
@friendly
def report(run_dir: Path = typer.Argument(..., help="Run directory.")):
    """(Re)build report.html of a run directory."""
    from .progress import console
    from .report import build_report

    path = build_report(run_dir)
    console().print(f"report: [bold]{path}[/]")


@app.command()
@friendly
def encoders():
    """List encoders: name, dim, family, text tower, and whether weights are available here."""
    from rich.table import Table
    from rich.console import Console

    from .encoders import list_encoders

    t = Table(title="imgclust encoders (hf:<hub id or dir> loads any other transformers checkpoint)")
    for col in ("name", "dim", "family", "text", "weights here", "description"):
        t.add_column(col)
    for e in list_encoders():
        t.add_row(e["name"], str(e["dim"] or "?"), e["family"], "yes" if e["text"] else "no",
                  "[green]yes[/]" if e["available"] else "[red]no[/]", e["description"])
    Console().print(t)


@app.command()
@friendly
def demo(
    out: Path = typer.Option(Path("runs/demo"), "--out", "-o", help="Run directory to write."),
    per_class: int = typer.Option(24, "--per-class", help="Augmented views per demo photo."),
    encoder: str = EncoderOpt,
    method: str = MethodOpt,
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or mps."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
):
    """Offline demo: cluster views of scikit-image's bundled photos and score against the truth."""
    from .api import cluster_images
    from .demo import DEMO_PHOTOS, make_demo_dataset
    from .progress import console

    data = make_demo_dataset(out / "images", per_class=per_class)
    console().print(f"demo data: {per_class} random crops/flips/colour shifts of each of "
                    f"{len(DEMO_PHOTOS)} photos in {data}; task: recover the source photo")
    result = cluster_images([str(data)], encoder=encoder, method=method, k="auto", labels="folder",
                            device=device, out=out, progress=not quiet)
    _summary(result, out)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
