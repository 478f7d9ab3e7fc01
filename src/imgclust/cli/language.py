"""Language commands: ``name``, ``search``, ``finetune``, ``compare``."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from ._common import DimsOpt, KOpt, MethodOpt, ReduceOpt, SeedOpt, SeedsOpt, app, friendly, parse_k


@app.command()
@friendly
def name(
    run_dir: Path = typer.Argument(..., help="Run directory."),
    vocab: Optional[str] = typer.Option(
        None, "--vocab", help="general, imagenet, cifar100, or a file with one name per line (default general; "
                              "classifier encoders such as efficientnet-lite0 name with their ImageNet classes)."),
    top: int = typer.Option(3, "--top", help="Names kept per cluster."),
    template: Optional[List[str]] = typer.Option(
        None, "--template", help="Prompt template with {} for the name; repeat for an ensemble "
                                 "(default: 'a photo of a {}.', 'a close-up photo of a {}.', ...)."),
    contrast: float = typer.Option(0.5, "--contrast", help="0 = plain zero-shot vote of the members, 1 = rank by "
                                                           "how much better a name fits this cluster than the others."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or mps."),
):
    """Name each cluster from a vocabulary (CLIP/SigLIP text tower, or efficientnet-lite0's ImageNet head)."""
    import json

    from rich.table import Table

    from ..language.naming import name_clusters
    from ..progress import console

    names = name_clusters(run_dir, vocab=vocab, top=top, templates=template or None, device=device,
                          contrast=contrast)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    sizes = metrics.get("cluster_sizes", {})
    info = metrics.get("naming", {})
    t = Table(title=f"cluster names ({info.get('method', '?')}, vocabulary {info.get('vocab', '?')}, "
                    f"{info.get('vocab_size', '?')} names)")
    t.add_column("cluster", justify="right")
    t.add_column("size", justify="right")
    t.add_column("name", style="bold")
    t.add_column("score", justify="right")
    t.add_column("runners-up")
    for c, ranked in names.items():
        best, score = ranked[0]
        rest = ", ".join(f"{n} ({s:.2f})" for n, s in ranked[1:])
        t.add_row(str(c), str(sizes.get(str(c), "")), best, f"{score:.3f}", rest)
    con = console()
    con.print(t)
    con.print(f"names written to [bold]{run_dir / 'clusters.parquet'}[/] (cluster_name) and metrics.json")


@app.command()
@friendly
def search(
    run_dir: Path = typer.Argument(..., help="Run directory."),
    query: str = typer.Argument(..., help="A sentence (text -> image, CLIP/SigLIP runs) or an image path "
                                          "(image -> image, any run)."),
    top: int = typer.Option(10, "--top", "-n", help="Number of results."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or mps."),
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON on stdout."),
):
    """Find the run's images most similar to a sentence or to an image."""
    import json

    import pyarrow.parquet as pq
    from rich.table import Table

    from ..language.search import search_run
    from ..progress import console

    results = search_run(run_dir, query, top=top, device=device)
    cols = pq.read_table(run_dir / "clusters.parquet").to_pydict()
    where = {p: i for i, p in enumerate(cols["path"])}
    rows = []
    for rank, (path, score) in enumerate(results, 1):
        i = where.get(path)
        rows.append({"rank": rank, "path": path, "score": round(score, 6),
                     "cluster": cols["cluster"][i] if i is not None else None,
                     "cluster_name": cols["cluster_name"][i] if i is not None and "cluster_name" in cols else None})
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    t = Table(title=f"top {len(rows)} for {query!r}")
    for col, just in (("#", "right"), ("score", "right"), ("cluster", "right")):
        t.add_column(col, justify=just)
    t.add_column("path", overflow="fold")  # a path is the point: wrap it, never cut it
    for r in rows:
        cluster = "-" if r["cluster"] is None else str(r["cluster"])
        if r["cluster_name"]:
            cluster += f" {r['cluster_name']}"
        t.add_row(str(r["rank"]), f"{r['score']:.4f}", cluster, r["path"])
    console().print(t)


@app.command()
@friendly
def finetune(
    pairs: Path = typer.Option(..., "--pairs", help="CSV/Parquet with path,caption (or ROCOv2's ID,Caption CSV "
                                                     "beside the image folder)."),
    encoder: str = typer.Option("clip-vit-b-32", "--encoder", "-e",
                                help="CLIP/SigLIP encoder name or hf:<CLIP checkpoint dir or hub id>."),
    out: Path = typer.Option(..., "--out", "-o", help="Checkpoint directory to write (load it with --encoder hf:DIR)."),
    epochs: int = typer.Option(5, "--epochs", help="Passes over the training pairs."),
    batch_size: int = typer.Option(32, "--batch-size", help="Pairs per step (more = more negatives)."),
    lr: float = typer.Option(1e-5, "--lr", help="Peak learning rate (AdamW, warm-up then cosine decay)."),
    weight_decay: float = typer.Option(0.1, "--weight-decay", help="AdamW weight decay."),
    warmup: float = typer.Option(0.1, "--warmup", help="Warm-up: a fraction of all steps (< 1) or a step count."),
    train: str = typer.Option("all", "--train", help="What trains: all, last:N (last N blocks + heads) or proj."),
    val_fraction: float = typer.Option(0.1, "--val-fraction", help="Pairs held out for recall@1/5 each epoch."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or mps."),
    precision: str = typer.Option("auto", "--precision",
                                  help="auto (bf16/fp16 autocast on CUDA, fp32 elsewhere), fp32, bf16 or fp16."),
    seed: int = SeedOpt,
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars or per-epoch lines."),
):
    """Fine-tune a CLIP-family model on image-caption pairs (symmetric InfoNCE, learnable temperature)."""
    from ..language.finetune import finetune_clip
    from ..progress import console

    history = finetune_clip(pairs, encoder=encoder, out=out, epochs=epochs, batch_size=batch_size, lr=lr,
                            weight_decay=weight_decay, warmup=warmup, train=train, val_fraction=val_fraction,
                            device=device, precision=precision, random_state=seed, progress=not quiet)
    best = history.get("best")
    msg = f"best epoch {history['best_epoch']}"
    if best:
        msg += (f": recall@1 image->text {best['i2t_r1']:.3f}, text->image {best['t2i_r1']:.3f}; "
                f"recall@5 {best['i2t_r5']:.3f} / {best['t2i_r5']:.3f}")
    console().print(msg, highlight=False)
    console().print(f"checkpoint: [bold]{out}[/]  history: {out / 'history.json'}  "
                    f"use: imgclust run IMAGES --encoder hf:{out}")


@app.command()
@friendly
def compare(
    inputs: List[str] = typer.Argument(..., help="Image files, folders, globs, or a CSV/Parquet manifest."),
    encoders_: str = typer.Option(
        ..., "--encoders", help="Comma-separated encoders, e.g. pixels,clip-vit-b-32,hf:DIR."
    ),
    reduce: str = ReduceOpt,
    dims: int = DimsOpt,
    map: str = typer.Option("pca", "--map", help="2-D map of each run: pca, umap, tsne or auto."),
    method: str = MethodOpt,
    k: str = KOpt,
    labels: Optional[str] = typer.Option(None, "--labels", help="folder or manifest: adds accuracy, NMI, ARI."),
    seeds: int = SeedsOpt,
    seed: int = SeedOpt,
    out: Path = typer.Option(Path("runs/compare"), "--out", "-o",
                             help="Writes compare.json, compare.md and one run directory per encoder."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or mps."),
    embed_batch: int = typer.Option(64, "--embed-batch", help="Images per encoder forward pass."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Embedding cache (default ~/.cache/imgclust)."),
    no_report: bool = typer.Option(False, "--no-report", help="Skip each run's report.html."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
):
    """Cluster the same images with several encoders (same reducer and clusterer) and tabulate the scores."""
    from rich.table import Table

    from ..language.compare import COLUMNS, compare_encoders
    from ..progress import console

    rows = compare_encoders(inputs, encoders_, reduce=reduce, n_components=dims, map=map, method=method,
                            k=parse_k(k), labels=labels, seeds=seeds, random_state=seed, device=device,
                            batch_size=embed_batch, cache_dir=cache_dir, out=out, report=not no_report,
                            progress=not quiet)
    ok = [r for r in rows if not r.get("error")]
    # A compact view; compare.md / compare.json have every column (Calinski-Harabasz, speed...).
    short = {"silhouette": "sil", "davies_bouldin": "DB", "acc": "acc", "nmi": "NMI", "ari": "ARI",
             "top5_neighbor_acc": "kNN@5"}
    cols = [(key, short[key], hi) for key, _, hi in COLUMNS if key in short and any(r.get(key) is not None for r in ok)]
    t = Table(title=f"{ok[0]['n_images']} images, {method}, k={k}, reduce {reduce}")
    t.add_column("encoder", overflow="fold")
    t.add_column("dim", justify="right")
    for _, header, higher in cols:
        t.add_column(f"{header} {'↑' if higher else '↓'}", justify="right", no_wrap=True)
    for r in ok:
        t.add_row(r["encoder"], str(r["dim"]), *["-" if r.get(key) is None else f"{r[key]:.3f}" for key, _, _ in cols])
    con = console()
    con.print(t)
    for r in rows:
        if r.get("error"):
            con.print(f"[yellow]not compared[/] {r['encoder']}: {r['error']}", highlight=False)
    con.print(f"table: [bold]{out / 'compare.md'}[/]  data: {out / 'compare.json'}  runs: {out}/<encoder>/")
