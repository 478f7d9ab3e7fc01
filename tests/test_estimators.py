"""scikit-learn's own estimator checks on imgclust's reducers and clusterers.

``parametrize_with_checks`` runs every applicable API check (cloning, parameters untouched by
``fit``, ``n_features_in_``, NaN/inf/empty/sparse/complex input rejected, fitted-state checks,
determinism with ``random_state``, pickling...). The checks that cannot apply are listed below
with the reason; everything else must pass.
"""

from __future__ import annotations

import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from imgclust.cluster import HDBSCAN, SCAN, TEMI, Agglomerative, KMeans, KMedoids, Spectral
from imgclust.reduce import Reducer

# These checks set n_clusters=1. A one-cluster "clustering" carries no information, so every
# imgclust clusterer rejects k < 2 with a clear error (and `--k 1` is refused before embedding).
_ONE_CLUSTER = {
    check: "sets n_clusters=1; imgclust clusterers require k >= 2 by design"
    for check in ("check_dont_overwrite_parameters", "check_methods_subset_invariance",
                  "check_fit2d_1feature", "check_fit2d_predict1d")
}

ESTIMATORS = [
    KMeans(n_clusters=3, n_init=2), KMedoids(n_clusters=3), HDBSCAN(), Agglomerative(n_clusters=3),
    Spectral(n_clusters=3),
    # The heads, tiny: the checks are about the API contract, not about training quality.
    SCAN(n_clusters=3, n_neighbors=3, n_heads=2, epochs=2, min_steps=0, self_label_epochs=1, batch_size=32),
    TEMI(n_clusters=3, n_neighbors=3, n_heads=2, epochs=2, min_steps=0, batch_size=32),
    # UMAP and t-SNE are left out: t-SNE cannot transform new points (the checks need it) and
    # UMAP's numba compilation would cost ~15 s per check; both share this estimator's code path.
    Reducer("pca", n_components=2), Reducer("none"),
]


def _expected(est) -> dict[str, str]:
    return _ONE_CLUSTER if hasattr(est, "n_clusters") else {}


@parametrize_with_checks(ESTIMATORS, expected_failed_checks=_expected)
def test_sklearn_estimator_contract(estimator, check):
    check(estimator)


@pytest.mark.parametrize("est", [e for e in ESTIMATORS if hasattr(e, "n_clusters")], ids=lambda e: type(e).__name__)
def test_one_cluster_is_refused_with_a_clear_error(est):
    """The reason the checks above are expected to fail: k=1 is an InputError (a ValueError too)."""
    import numpy as np

    from imgclust.errors import ImgclustError

    X = np.random.default_rng(0).normal(size=(20, 3)).astype(np.float32)
    with pytest.raises(ImgclustError, match="k must be at least 2") as info:
        est.set_params(n_clusters=1).fit(X)
    assert isinstance(info.value, ValueError)
