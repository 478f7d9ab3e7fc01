"""scikit-learn's input validation, raised as imgclust's :class:`~imgclust.errors.InputError`.

``validate_data`` rejects 1-D, empty, NaN/inf, complex and sparse input with a ``ValueError``
whose wording scikit-learn's estimator checks look for. Re-raising it as ``InputError`` (an
``ImgclustError`` and a ``ValueError``) keeps that wording for the checks and gives library
users and the CLI the one error type they catch.
"""

from __future__ import annotations

import numpy as np
from sklearn.utils.validation import check_is_fitted, validate_data

from .._rows import is_lazy
from ..errors import InputError
from ..limits import ASSIGN_BATCH


def validated(est, X, *, reset: bool = True, dtype=np.float32, lazy_ok: bool = False) -> np.ndarray:
    """``validate_data(est, X)`` as a C-contiguous array; ``reset=False`` also checks ``est`` is fitted.

    With ``lazy_ok``, the store's lazy multi-shard view (:class:`~imgclust._rows.ShardRows`) is
    checked batch by batch (finite values, feature count) and returned as it is, not copied.
    """
    if not reset:
        check_is_fitted(est)
    if lazy_ok and is_lazy(X):
        return _validated_lazy(est, X, reset)
    try:
        return np.ascontiguousarray(validate_data(est, X, dtype=dtype, reset=reset))
    except InputError:
        raise
    except ValueError as e:
        raise InputError(str(e)) from e


def _validated_lazy(est, X, reset: bool):
    if reset:
        est.n_features_in_ = X.shape[1]
    elif X.shape[1] != est.n_features_in_:
        raise InputError(f"X has {X.shape[1]} features, but {type(est).__name__} is expecting "
                         f"{est.n_features_in_} features as input.")
    for s, rows in X.batches(ASSIGN_BATCH):
        if not np.isfinite(rows).all():
            raise InputError(f"Input X contains NaN or infinity (rows {s}..{s + len(rows) - 1}).")
    return X
