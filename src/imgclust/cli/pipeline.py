"""Commands that run the pipeline: ``run``, ``cluster --from``, ``report``, ``encoders``, ``demo``."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from ._common import (
    BatchOpt,
    DimsOpt,
    EncoderOpt,
    EpochsOpt,
    HeadsOpt,
    KCritOpt,
    KOpt,
    LrOpt,
    MapOpt,
    MethodOpt,
    ReduceOpt,
    SeedOpt,
    SeedsOpt,
    SelfLabelOpt,
    app,
    friendly,
    head_params,
    parse_k,
    print_summary,
)


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
    k_criterion: str = KCritOpt,
    labels: Optional[str] = typer.Option(None, "--labels", help="folder (class = parent folder) or manifest."),
    seeds: int = SeedsOpt,
    seed: int = SeedOpt,
    out: Path = typer.Option(Path("runs/latest"), "--out", "-o", help="Run directory to write."),
    device: str = typer.Option("auto", "--device", help="auto (CUDA, then MPS, then CPU), cpu, cuda or mps."),
    runtime: str = typer.Option("auto", "--runtime", help="auto (torch on GPU, fastest installed on CPU), torch, "
                                "onnx or openvino; same vectors and cache whichever runs."),
    embed_batch: Optional[int] = typer.Option(None, "--embed-batch",
                                              help="Images per encoder forward pass (default 64 on CPU, 256 on CUDA)."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Embedding cache (default ~/.cache/imgclust)."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Do not read or write the embedding cache."),
    epochs: Optional[int] = EpochsOpt,
    batch_size: Optional[int] = BatchOpt,
    lr: Optional[float] = LrOpt,
    heads: Optional[int] = HeadsOpt,
    self_label: Optional[bool] = SelfLabelOpt,
    augment: int = typer.Option(0, "--augment", help="Embed N augmented views per image (random resized crop, "
                                                     "flip, colour jitter; deterministic per --seed)."),
    augment_as: str = typer.Option("both", "--augment-as", help="both (extra points + views for scan/temi), "
                                                                "points or views."),
    no_report: bool = typer.Option(False, "--no-report", help="Skip plots and report.html."),
    engine: str = typer.Option("local", "--engine", help="Embed engine: local, or ray (pip install 'imgclust[ray]')."),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help="Ray cluster to join (default: local Ray)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
):
    """Embed, cluster and score images; write a run directory with plots and report.html."""
    from ..api import cluster_images

    result = cluster_images(inputs, encoder=encoder, reduce=reduce, n_components=dims, map=map, method=method,
                            k=parse_k(k), labels=labels, seeds=seeds, random_state=seed, device=device,
                            runtime=runtime, batch_size=embed_batch, cache_dir=cache_dir, cache=not no_cache, out=out,
                            plots=not no_report, report=not no_report,
                            method_params=head_params(epochs, batch_size, lr, heads, self_label),
                            progress=not quiet, engine=engine, ray_address=ray_address, augment=augment,
                            augment_as=augment_as, k_criterion=k_criterion)
    print_summary(result, out)


@app.command()
@friendly
def cluster(
    from_: Path = typer.Option(..., "--from", help="An existing run directory."),
    method: str = MethodOpt,
    k: str = KOpt,
    k_criterion: str = KCritOpt,
    reduce: Optional[str] = typer.Option(None, "--reduce", help="Override the run's reducer."),
    dims: Optional[int] = typer.Option(None, "--dims", help="Override the run's clustering dimensions."),
    seeds: int = SeedsOpt,
    seed: int = SeedOpt,
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="New run directory (default: RUN_DIR-METHOD)."),
    epochs: Optional[int] = EpochsOpt,
    batch_size: Optional[int] = BatchOpt,
    lr: Optional[float] = LrOpt,
    heads: Optional[int] = HeadsOpt,
    self_label: Optional[bool] = SelfLabelOpt,
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
):
    """Re-cluster a run from its saved embeddings, without touching the images."""
    from ..api import recluster

    out = out or from_.with_name(f"{from_.name}-{method}")
    result = recluster(from_, method=method, k=parse_k(k), reduce=reduce, n_components=dims, seeds=seeds,
                       random_state=seed, out=out,
                       method_params=head_params(epochs, batch_size, lr, heads, self_label),
                       progress=not quiet, k_criterion=k_criterion)
    print_summary(result, out)


@app.command()
@friendly
def report(run_dir: Path = typer.Argument(..., help="Run directory.")):
    """(Re)build report.html of a run directory."""
    from ..progress import console
    from ..report import build_report

    path = build_report(run_dir)
    console().print(f"report: [bold]{path}[/]")


@app.command()
@friendly
def encoders():
    """List encoders: name, dim, family, text tower, and whether weights are available here."""
    from rich.console import Console
    from rich.table import Table

    from ..encoders import list_encoders

    t = Table(title="imgclust encoders (hf:<hub id or dir> loads any other transformers checkpoint; "
                    "NAME+flip averages each image with its mirror)")
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
    from ..api import run_demo
    from ..datasets.demo import DEMO_PHOTOS
    from ..progress import console

    console().print(f"demo data: {per_class} random crops/flips/colour shifts of each of "
                    f"{len(DEMO_PHOTOS)} photos in {out / 'images'}; task: recover the source photo")
    result = run_demo(out, per_class=per_class, encoder=encoder, method=method, device=device, progress=not quiet)
    print_summary(result, out)
