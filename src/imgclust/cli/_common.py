"""Shared pieces of the command line: the Typer app, error handling, option types, the run summary."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Callable

import typer

from ..errors import ImgclustError

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode="rich",
                  help="Cluster image collections with pretrained vision encoders, score the clusters, show them.")


def print_error(msg: str) -> None:
    from rich.markup import escape

    from ..progress import console

    # Escaped: messages name extras like 'imgclust[onnx]', which rich would eat as markup tags.
    console().print(f"[bold red]error:[/] {escape(msg)}", highlight=False, markup=True, soft_wrap=True)


def friendly(fn: Callable) -> Callable:
    """User errors -> one line on stderr and a non-zero exit; never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ImgclustError as exc:
            print_error(str(exc))
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            print_error("interrupted; embeddings computed so far are cached, re-run to resume")
            raise typer.Exit(130) from None
        except MemoryError:
            print_error("out of memory: try a smaller --embed-batch, --reduce pca, or fewer images")
            raise typer.Exit(3) from None

    return wrapper


def parse_k(k: str) -> int | str | None:
    if k in ("auto", "none"):
        return None if k == "none" else "auto"
    try:
        return int(k)
    except ValueError:
        raise ImgclustError(f"--k must be a number, 'auto' or 'none' (got {k!r})") from None


def head_params(epochs, batch_size, lr, heads=None, self_label=None) -> dict:
    """The heads' options the user set (unset ones keep the estimator's defaults)."""
    given = {"epochs": epochs, "batch_size": batch_size, "lr": lr, "n_heads": heads, "self_label": self_label}
    return {k: v for k, v in given.items() if v is not None}


def print_summary(result, out: Path | None) -> None:
    from rich.table import Table

    from ..progress import console

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
    aug = m.get("augment")
    if aug:
        ext = aug.get("external_originals") or {}
        con.print(f"{aug['n_views']} augmented view(s) per image, used as {aug['used_as']}"
                  + ("" if aug.get("views_used_by_method") or aug["used_as"] == "points"
                     else " (this method ignores views: only scan/temi use them)")
                  + (f"; on the {aug['n_original']} originals: "
                     + ", ".join(f"{key} {ext[key]:.4f}" for key in ("acc", "nmi", "ari") if key in ext)
                     if ext else ""))
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
                          help="Encoder name (see `imgclust encoders`) or hf:<hub id or local dir>; several, "
                          "comma-separated (efficientnet-lite0,efficientnet-lite1), cluster on all their spaces. "
                          "Append +flip to any name to average each image's vector with its mirror's "
                          "(efficientnet-lite0+flip: 2x the embedding time, its own cache).")
ReduceOpt = typer.Option("pca", "--reduce", help="Reduce before clustering: umap, pca, tsne or none.")
DimsOpt = typer.Option(50, "--dims", help="Dimensions of the clustering input when reducing.")
MapOpt = typer.Option("auto", "--map", help="2-D map: auto (umap), umap, tsne or pca.")
MethodOpt = typer.Option("kmeans", "--method", "-m",
                         help="kmeans, kmedoids, hdbscan, agglomerative, spectral, scan, temi or turtle.")
KOpt = typer.Option("10", "--k", "-k", help="Number of clusters, 'auto' (sweep, pick by --k-criterion) or 'none'.")
KCritOpt = typer.Option("silhouette", "--k-criterion",
                        help="How --k auto picks k: silhouette (default), stability (half-split agreement, Lange "
                             "et al. 2004), gap (Tibshirani 2001), davies_bouldin or calinski_harabasz.")
SeedsOpt = typer.Option(1, "--seeds", help="Repeat clustering with N seeds; report mean and std.")
SeedOpt = typer.Option(0, "--seed", help="Base random seed.")
EpochsOpt = typer.Option(None, "--epochs", help="Training epochs for scan/temi heads.")
BatchOpt = typer.Option(None, "--batch-size", help="Training batch size for scan/temi heads.")
LrOpt = typer.Option(None, "--lr", help="Learning rate for scan/temi heads.")
HeadsOpt = typer.Option(None, "--heads", help="Heads (restarts) trained together for scan/temi/turtle "
                        "(defaults 10/16/4); SCAN and TURTLE keep the lowest-loss one, TEMI ensembles them.")
SelfLabelOpt = typer.Option(None, "--self-label/--no-self-label",
                            help="SCAN's self-labelling step (default on).")
