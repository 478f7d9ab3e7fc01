"""k-means assignment on Ray (``--engine ray``): every row's nearest centres, computed by Ray actors.

The centroids go once into Ray's object store; the rows are split into the same blocks as the
local streamed assignment (:func:`~imgclust.cluster._scale.assign_batches`, ``batch`` rows each)
and ``map_batches`` sends block numbers to a pool of actors. Each actor reads its blocks itself:
from the store's memory-mapped shard (the file is reopened in the actor, so only block numbers
and results travel) or, for rows in memory (e.g. after PCA), from one copy put in the object
store. Each block is searched with the same exact faiss index as locally, so labels and
distances are the local ones.
"""

from __future__ import annotations

import mmap

import numpy as np

__all__ = ["assign_batches_ray"]


def _source(X) -> dict:
    """How an actor reaches the rows: a memory-mapped file it reopens, or an object-store reference."""
    if isinstance(X, np.memmap) and isinstance(X.base, mmap.mmap) and X.filename and X.flags.c_contiguous:
        return {"file": str(X.filename), "offset": int(X.offset), "dtype": str(X.dtype), "shape": list(X.shape)}
    return {"array": None}  # not a whole file (a slice, a copy, PCA output): put in the object store


class _AssignActor:
    """Builds the exact index on the shared centroids once, then assigns block after block."""

    def __init__(self, centers_ref: list, source: dict, k: int, batch: int, threads: int):
        import faiss
        import ray

        faiss.omp_set_num_threads(max(1, int(threads)))
        centers = np.ascontiguousarray(ray.get(centers_ref[0]), np.float32)
        self.index = faiss.IndexFlatL2(centers.shape[1])
        self.index.add(centers)
        if "file" in source:
            self.X = np.memmap(source["file"], dtype=source["dtype"], mode="r", offset=source["offset"],
                               shape=tuple(source["shape"]))
        else:
            self.X = ray.get(source["array"][0])
        self.k, self.batch = k, batch

    def __call__(self, batch: dict) -> dict:
        rows, labels, dists = [], [], []
        for b in batch["id"]:
            s = int(b) * self.batch
            d, lab = self.index.search(np.ascontiguousarray(self.X[s:s + self.batch], np.float32), self.k)
            rows.append(np.arange(s, s + len(lab), dtype=np.int64))
            labels.append(lab)
            dists.append(np.maximum(d, 0))
        return {"row": np.concatenate(rows), "labels": np.concatenate(labels).astype(np.int64),
                "dist": np.concatenate(dists).astype(np.float32)}


def assign_batches_ray(X, centers: np.ndarray, k: int = 2, batch: int | None = None,
                       address: str | None = None, actors: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`~imgclust.cluster._scale.assign_batches` on Ray: ``(labels (N, k) int64, squared distances (N, k))``.

    Args:
        X: Rows (a memory map of the store's vectors, or an array).
        centers: Centroids (put once in the object store).
        k: Nearest centres per row.
        batch: Rows per block (default :data:`~imgclust.limits.ASSIGN_BATCH`, the local path's).
        address: Ray cluster to join (default: start Ray on this machine).
        actors: Actor pool size (default: the cluster's CPUs, one faiss thread each).
    """
    from .. import limits
    from .._ray_session import ray_init

    ray = ray_init(address)
    ray.data.DataContext.get_current().enable_progress_bars = False
    batch = int(batch or limits.ASSIGN_BATCH)
    centers = np.ascontiguousarray(centers, np.float32)
    k = max(1, min(k, len(centers)))
    n = len(X)
    labels = np.empty((n, k), np.int64)
    dist = np.empty((n, k), np.float32)
    n_blocks = (n + batch - 1) // batch
    if not n_blocks:
        return labels, dist
    source = _source(X)
    if "array" in source:
        source["array"] = [ray.put(np.ascontiguousarray(X, np.float32))]  # one copy, read zero-copy by actors
    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    n_actors = max(1, min(actors or cpus, n_blocks))
    # Block numbers from the driver (no read tasks: those would wait for CPUs the actors hold).
    ds = ray.data.from_items([{"id": b} for b in range(n_blocks)], override_num_blocks=min(n_blocks, 4 * n_actors))
    out = ds.map_batches(_AssignActor, fn_constructor_kwargs={
        "centers_ref": [ray.put(centers)], "source": source, "k": k, "batch": batch,
        "threads": max(1, cpus // n_actors)}, batch_size=1, batch_format="numpy", concurrency=n_actors,
        num_cpus=1, max_restarts=-1, max_task_retries=-1)  # a dead actor is restarted, its block retried
    done = 0
    for b in out.iter_batches(batch_size=None, batch_format="numpy"):
        labels[b["row"]], dist[b["row"]] = b["labels"], b["dist"]
        done += len(b["row"])
    if done != n:
        raise RuntimeError(f"Ray assignment returned {done} of {n} rows")
    return labels, dist
