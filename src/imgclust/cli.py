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

    from .naming import name_clusters
    from .progress import console

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

    from .progress import console
    from .search import search_run

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
    from .finetune import finetune_clip
    from .progress import console

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
    encoders_: str = typer.Option(..., "--encoders", help="Comma-separated encoders, e.g. pixels,clip-vit-b-32,hf:DIR."),
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

    from .compare import COLUMNS, compare_encoders
    from .progress import console

    rows = compare_encoders(inputs, encoders_, reduce=reduce, n_components=dims, map=map, method=method,
                            k=_parse_k(k), labels=labels, seeds=seeds, random_state=seed, device=device,
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
):
    """List the run's images most similar to IMAGE (embedded with the run's encoder); optionally cluster them."""
    from rich.table import Table
    from rich.text import Text

    from .explore import cluster_candidates, neighbors as find_neighbors
    from .progress import console

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

    from .explore import assign as assign_images
    from .progress import console

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
    from .animate import animate_run
    from .progress import console

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
    from .explain import explain_run
    from .progress import console

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
    from rich.table import Table

    from .api import probe_run
    from .progress import console

    import json

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


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
