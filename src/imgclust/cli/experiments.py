"""Experiment commands: ``robustness`` and ``datasets prepare``."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from ._common import (
    DimsOpt,
    EncoderOpt,
    KOpt,
    MapOpt,
    MethodOpt,
    ReduceOpt,
    SeedOpt,
    SeedsOpt,
    app,
    friendly,
    parse_k,
)

datasets_app = typer.Typer(no_args_is_help=True, help="Convert downloaded datasets into labelled manifests.")
app.add_typer(datasets_app, name="datasets")


def _ints(text: str, what: str) -> list[int]:
    from ..errors import ImgclustError

    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ImgclustError(f"{what} must be comma-separated integers (got {text!r})") from None


@app.command()
@friendly
def robustness(
    inputs: List[str] = typer.Argument(..., help="Image files, folders, globs, or a CSV/Parquet manifest."),
    labels: Optional[str] = typer.Option(None, "--labels", help="folder (class = parent folder) or manifest."),
    corruptions: str = typer.Option("all", "--corruptions", "-c",
                                    help="Comma-separated: gaussian_noise, gaussian_blur, jpeg, brightness, contrast, "
                                         "occlusion, distractors; or all."),
    severities: str = typer.Option("1,2,3,4,5", "--severities", help="Comma-separated severities, 1 (mild) .. 5."),
    distractors: Optional[Path] = typer.Option(None, "--distractors",
                                               help="Folder of unrelated images to mix in (the distractors rows)."),
    encoder: str = EncoderOpt,
    reduce: str = ReduceOpt,
    dims: int = DimsOpt,
    map: str = MapOpt,
    method: str = MethodOpt,
    k: str = KOpt,
    seeds: int = SeedsOpt,
    seed: int = SeedOpt,
    out: Path = typer.Option(Path("runs/robustness"), "--out", "-o", help="Run directory to write."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or mps."),
    embed_batch: int = typer.Option(64, "--embed-batch", help="Images per encoder forward pass."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Embedding cache (default ~/.cache/imgclust)."),
    no_report: bool = typer.Option(False, "--no-report", help="Skip plots and report.html."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
):
    """Re-embed the images under corruptions at several severities, recluster, and chart each score."""
    from rich.table import Table

    from ..explore.robustness import robustness as run_robustness
    from ..progress import console

    res = run_robustness(inputs, encoder, labels=labels, corruptions=corruptions,
                         severities=_ints(severities, "--severities"), distractors=distractors, reduce=reduce,
                         n_components=dims, map=map, method=method, k=parse_k(k), seeds=seeds, random_state=seed,
                         device=device, batch_size=embed_batch, cache_dir=cache_dir, out=out,
                         plots=not no_report, report=not no_report, progress=not quiet)
    keys = [key for key in ("acc", "nmi", "ari") if res.rows and res.rows[0].get(key) is not None]
    keys += ["silhouette", "nmi_vs_clean", "cosine_to_clean"]
    t = Table(title=f"robustness: {res.config['n_images']} images, {res.config['method']} k={res.config['k']}")
    for col in ["corruption", "severity", "param", *keys]:
        t.add_column(col, justify="left" if col == "corruption" else "right")
    for r in res.rows:
        t.add_row(r["corruption"], str(r["severity"]), f"{r['param']:g}",
                  *("-" if r.get(key) is None else f"{r[key]:.4f}" for key in keys))
    console().print(t)
    console().print(f"run directory: [bold]{out}[/]  table: {out / 'robustness.csv'}  report: {out / 'report.html'}")


@datasets_app.command("prepare")
@friendly
def prepare(
    name: str = typer.Argument(..., help="cifar10, cifar100, cifar100-20, stl10, oxford-pets, imagenet, in50, in100 "
                                         "or in200."),
    root: Path = typer.Argument(..., help="The downloaded copy (extracted archive folder)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Manifest CSV (default ROOT/imgclust-NAME.csv)."),
    split: str = typer.Option("test", "--split", help="train, test or all (where the dataset has splits)."),
    images: Optional[Path] = typer.Option(None, "--images",
                                          help="Where decoded PNGs go (default beside the manifest)."),
    classes: Optional[Path] = typer.Option(None, "--classes",
                                           help="ImageNet subsets: a file with one WordNet id a line."),
    limit: Optional[int] = typer.Option(None, "--limit", help="At most this many images per class."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
):
    """Convert an already downloaded dataset into a labelled manifest (path,label); nothing is downloaded."""
    from ..datasets.prepare import prepare_dataset
    from ..progress import console

    res = prepare_dataset(name, root, out=out, split=split, images_dir=images, classes=classes, limit=limit,
                          progress=not quiet)
    console().print(f"{res.n_images} images, {res.n_classes} classes -> [bold]{res.manifest}[/]")
    console().print(f"next: imgclust run {res.manifest} --labels manifest --k {res.n_classes}")
