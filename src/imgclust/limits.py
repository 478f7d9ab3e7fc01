"""Size thresholds, in one place: where each stage switches to its scalable path, or refuses.

Below these sizes every stage behaves exactly as it always has (small runs are unchanged);
above them the store memory-maps its shards, k-means trains on a sample and assigns in
streaming batches, HDBSCAN fits a sample, kNN uses an IVF index, the map and the report
draw a stratified sample, and the O(N^2) methods refuse with one line naming an alternative.
The README's "Scale" section lists the same numbers.
"""

from __future__ import annotations

from .errors import InputError

__all__ = ["SHARD_MIN_ROWS", "RUN_REF_ROWS", "KMEANS_FULL_ROWS", "KMEANS_MAX_POINTS_PER_CENTROID",
           "KMEANS_LARGE_ITER", "KMEANS_SEED_ROWS", "ASSIGN_BATCH", "HDBSCAN_FIT_ROWS", "KNN_EXACT_ROWS",
           "MAP_FIT_ROWS", "REPORT_MAX_POINTS", "MAX_ROWS", "check_size"]

# Store: parquet parts are merged into one memory-mapped .npy shard once they hold this many rows.
SHARD_MIN_ROWS = 20_000
# A run directory references the store's shards instead of copying embeddings.npy from this size.
RUN_REF_ROWS = 50_000

# k-means: up to this many rows, the full data with n_init k-means++ restarts (as always).
KMEANS_FULL_ROWS = 50_000
# Above it: train on max(k * this, KMEANS_FULL_ROWS) sampled rows (faiss's max_points_per_centroid
# idea), one restart ...
KMEANS_MAX_POINTS_PER_CENTROID = 64
# ... with at most this many Lloyd iterations, k-means++ seeding on at most this many rows ...
KMEANS_LARGE_ITER = 20
KMEANS_SEED_ROWS = 20_000
# ... and assignment of every row in batches of this many.
ASSIGN_BATCH = 65_536

# HDBSCAN fits on this many sampled rows; the rest are assigned to the nearest cluster (or noise).
HDBSCAN_FIT_ROWS = 20_000
# kNN graphs are exact (flat index) up to this many rows, IVF above.
KNN_EXACT_ROWS = 200_000
# The 2-D map (UMAP/t-SNE) is fitted on a stratified sample of this many rows above it.
MAP_FIT_ROWS = 20_000
# The report shows at most this many points (stratified: every cluster represented).
REPORT_MAX_POINTS = 20_000

# Methods whose memory or time is O(N^2): the largest N each accepts, and what to use instead.
MAX_ROWS = {
    "kmedoids": (20_000, "O(N^2) distance matrix"),
    "agglomerative": (30_000, "O(N^2) memory"),
    "spectral": (50_000, "an eigendecomposition of the N x N graph"),
}
_ALTERNATIVE = "use --method kmeans (millions of images) or hdbscan (fits a sample, assigns the rest)"


def check_size(method: str, n: int) -> None:
    """Raise one clear line when ``method`` cannot handle ``n`` rows, naming the scalable alternative."""
    if method in MAX_ROWS and n > MAX_ROWS[method][0]:
        limit, why = MAX_ROWS[method]
        raise InputError(f"{method} needs {why}: {n:,} images is over its limit of {limit:,}; {_ALTERNATIVE}")
