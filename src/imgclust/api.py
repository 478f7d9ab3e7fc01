"""The one place that chains the stages: sources -> encoder -> store -> reducer -> clusterer -> run dir.

Each function here only calls the stages in order; the work is done in :mod:`imgclust.pipeline`
(images -> vectors), :mod:`imgclust.analyze` (vectors -> clusters and scores),
:mod:`imgclust.rundir` (the run-directory files) and :mod:`imgclust.report` (plots, report.html).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Sequence

from .analyze import check_k, cluster_embeddings, validate_options
from .augment import AUGMENT_MODES, augmented_set, embed_views, summarize, write_views
from .cluster.sweep import check_criterion
from .errors import ImgclustError
from .pipeline.embed import EmbedResult, embed_images
from .pipeline.multi import embed_multi, encoder_names
from .pipeline.sources import discover
from .rundir import ClusteringResult, load_run, run_config, run_embeddings, run_records, write_run_json

__all__ = ["ClusteringResult", "cluster_images", "cluster_embeddings", "embed_images", "load_run", "recluster",
           "run_demo", "EmbedResult"]


def cluster_images(inputs: str | os.PathLike | Sequence[str | os.PathLike], encoder="efficientnet-lite0", *,
                   reduce: str = "pca", n_components: int = 50, map: str = "auto", method: str | Any = "kmeans",
                   k: int | str | None = 10, labels: str | None = None, seeds: int = 1, random_state: int = 0,
                   device: str = "auto", runtime: str = "auto", batch_size: int | None = None,
                   cache_dir: str | os.PathLike | None = None, cache: bool = True,
                   out: str | os.PathLike | None = None, plots: bool = True, report: bool = True,
                   method_params: dict | None = None, progress: bool = False,
                   engine: str = "local", ray_address: str | None = None,
                   augment: int = 0, augment_as: str = "both", k_criterion: str = "silhouette") -> ClusteringResult:
    """Cluster an image collection end to end (CLI: ``imgclust run``).

    Args:
        inputs: Files, folders, globs or manifests (CSV/Parquet with ``path[,label][,caption]``).
        encoder: Registry name, ``hf:<hub id or dir>``, or an :class:`~imgclust.encoders.Encoder`;
            several (``"efficientnet-lite0,efficientnet-lite1"`` or a list) embed with each, cache
            each separately and cluster on all the spaces (see :func:`~imgclust.pipeline.multi.embed_multi`).
        reduce: Reducer for the clustering input (``none``, ``pca``, ``umap``, ``tsne``).
        n_components: Clustering input dimension when reducing.
        map: Reducer for the 2-D map (``auto``, ``umap``, ``tsne``, ``pca``).
        method: Clusterer name or estimator.
        k: Number of clusters, ``"auto"``, or ``None`` (HDBSCAN).
        labels: ``"folder"`` (parent folder is the class) or ``"manifest"``.
        seeds: Repeat clustering with N seeds and report mean and std.
        random_state: Base seed.
        device: ``auto``, ``cpu``, ``cuda`` or ``mps``.
        runtime: Inference runtime: ``auto`` (torch on a GPU, the fastest installed on CPU), ``torch``,
            ``onnx`` or ``openvino``; vectors and cache are the same whichever runs.
        batch_size: Images per forward pass (default: 64 on CPU, 256 on CUDA).
        cache_dir: Embedding cache root (default ``~/.cache/imgclust``).
        cache: Use the embedding cache.
        out: Write the run directory here.
        plots: Write PNG plots (with ``out``).
        report: Write ``report.html`` (with ``out``).
        method_params: Extra clusterer arguments.
        progress: Show progress bars.
        engine: ``local`` or ``ray``: Ray Data actors embed, and k-means past
            :data:`~imgclust.limits.KMEANS_FULL_ROWS` rows assigns every row on Ray as well.
        ray_address: Ray cluster to join with ``engine="ray"`` (default: start Ray here).
        augment: Embed this many augmented views of every image (random resized crop, flip,
            colour jitter; deterministic per ``random_state``; see :mod:`imgclust.augment`).
        augment_as: ``both`` (extra points, and views for SCAN/TEMI), ``points`` or ``views``.
        k_criterion: How ``k="auto"`` picks k: ``silhouette`` (default), ``stability``, ``gap``,
            ``davies_bouldin`` or ``calinski_harabasz`` (see :func:`~imgclust.cluster.sweep_k`).

    Returns:
        A :class:`ClusteringResult`.
    """
    t0 = time.perf_counter()
    validate_options(method, reduce, map)
    check_criterion(k_criterion)
    if augment and augment_as not in AUGMENT_MODES:
        raise ImgclustError(f"unknown --augment-as {augment_as!r}; valid: {', '.join(AUGMENT_MODES)}")
    records = discover(inputs, labels=labels)
    if isinstance(k, int):  # fail before embedding, not after
        check_k(method, k, len(records), method if isinstance(method, str) else type(method).__name__)
    several = encoder_names(encoder)
    embed = (lambda **kw: embed_multi(records, several, **kw)) if several else (
        lambda **kw: embed_images(records, encoder=encoder, **kw))
    emb = embed(device=device, runtime=runtime, batch_size=batch_size, cache_dir=cache_dir, cache=cache,
                progress=progress, engine=engine, ray_address=ray_address)
    config = run_config(inputs, emb, labels=labels, batch_size=batch_size, cache_dir=cache_dir, k=k)
    aug, points = _augment_points(emb, augment, augment_as, several=bool(several), random_state=random_state,
                                  cache_dir=cache_dir, cache=cache, progress=progress, out=out, config=config)
    if engine == "ray" and method == "kmeans":  # large-N k-means assigns every row on Ray too
        method_params = {"engine": "ray", "ray_address": ray_address, **(method_params or {})}
    result = cluster_embeddings(**points, reduce=reduce, n_components=n_components, map=map,
                                spaces=getattr(emb, "spaces", None),
                                method=method, k=k, seeds=seeds, random_state=random_state, k_criterion=k_criterion,
                                method_params=method_params, progress=progress, skipped=emb.skipped, config=config)
    if aug is not None:
        result.metrics["augment"] = summarize(result, aug, result.config.get("views_used", False))
    result.timings = {**emb.timings(), **result.timings,
                      "total": time.perf_counter() - t0}
    result.store = emb.store  # a large run references the store's shards instead of copying them
    if out is not None:
        _write(result, out, plots, report, aug)
    return result


def _augment_points(emb, augment: int, augment_as: str, *, several: bool, random_state: int, cache_dir, cache: bool,
                    progress: bool, out, config: dict) -> tuple[Any, dict]:
    """The rows to cluster: the embedded images, plus their augmented views with ``--augment N``."""
    points = {"embeddings": emb.embeddings, "records": emb.records, "hashes": emb.hashes}
    if not augment:
        return None, points
    if several:
        raise ImgclustError("--augment works with one encoder at a time")
    t = time.perf_counter()
    views = embed_views(emb.records, emb.hashes, emb.encoder, int(augment), seed=random_state,
                        cache_dir=cache_dir, cache=cache, batch_size=emb.batch_size, progress=progress)
    aug = augmented_set(emb, views, augment_as, seed=random_state, out=out)
    config.update(augment=int(augment), augment_as=augment_as, embed_views_s=time.perf_counter() - t)
    return aug, {"embeddings": aug.embeddings, "records": aug.records, "hashes": aug.hashes, "views": aug.views,
                 "view_index": aug.view_index, "columns": aug.columns}


def _write(result: ClusteringResult, out, plots: bool, report: bool, aug=None) -> None:
    from .report import write_run

    t = time.perf_counter()
    if aug is not None:
        write_views(aug, out)  # before the report: its thumbnails are read from these files
    write_run(result, out, plots=plots, report=report)
    result.timings["write"] = time.perf_counter() - t
    write_run_json(out, result.config, result.timings, result.sweep)  # now with the write time


def recluster(run_dir: str | os.PathLike, method: str | Any = "kmeans", k: int | str | None = 10, *,
              reduce: str | None = None, n_components: int | None = None, seeds: int = 1,
              random_state: int = 0, out: str | os.PathLike | None = None, method_params: dict | None = None,
              progress: bool = False, plots: bool = True, report: bool = True,
              k_criterion: str = "silhouette") -> ClusteringResult:
    """Re-cluster an existing run from its saved embeddings, without touching the images.

    CLI: ``imgclust cluster --from RUN_DIR``. The 2-D map of the run is kept.
    """
    import numpy as np

    run = load_run(run_dir)
    table = run["table"].to_pydict()
    cfg = dict(run["run"].get("config", {}))
    coords = np.stack([table["x"], table["y"]], 1).astype(np.float32)
    result = cluster_embeddings(run_embeddings(run), run_records(run),
                                reduce=reduce or cfg.get("reduce", "pca"),
                                n_components=n_components or cfg.get("n_components", 50),
                                map=cfg.get("map", "auto"), method=method, k=k, seeds=seeds, k_criterion=k_criterion,
                                random_state=random_state, coords=coords, method_params=method_params,
                                progress=progress, hashes=table.get("hash"), spaces=cfg.get("spaces"),
                                skipped=run["metrics"].get("skipped", []),
                                config={**cfg, "from_run": str(run_dir), "k_requested": k},
                                columns={c: table[c] for c in ("augmented", "source", "view") if c in table})
    if out is not None:
        _write(result, out, plots, report)
    return result


def run_demo(out: str | os.PathLike = "runs/demo", per_class: int = 24, encoder="efficientnet-lite0",
             method: str | Any = "kmeans", device: str = "auto", progress: bool = False) -> ClusteringResult:
    """The offline demo (CLI: ``imgclust demo``): views of scikit-image's photos, clustered with ``k=auto``.

    The task is to recover which photo each view came from; the folder is the label, so the run
    also gets ACC/NMI/ARI.
    """
    from .datasets.demo import make_demo_dataset

    data = make_demo_dataset(Path(out) / "images", per_class=per_class)
    return cluster_images([str(data)], encoder=encoder, method=method, k="auto", labels="folder",
                          device=device, out=out, progress=progress)
