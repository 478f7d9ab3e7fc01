"""scikit-learn's input validation, raised as imgclust's :class:`~imgclust.errors.InputError`.

``validate_data`` rejects 1-D, empty, NaN/inf, complex and sparse input with a ``ValueError``
whose wording scikit-learn's estimator checks look for. Re-raising it as ``InputError`` (an
``ImgclustError`` and a ``ValueError``) keeps that wording for the checks and gives library
users and the CLI the one error type they catch.
"""

from __future__ import annotations

import numpy as np
from sklearn.utils.validation import check_is_fitted, validate_data

from ..errors import InputError


def validated(est, X, *, reset: bool = True, dtype=np.float32) -> np.ndarray:
    """``validate_data(est, X)`` as a C-contiguous array; ``reset=False`` also checks ``est`` is fitted."""
    if not reset:
        check_is_fitted(est)
    try:
        return np.ascontiguousarray(validate_data(est, X, dtype=dtype, reset=reset))
    except InputError:
        raise
    except ValueError as e:
        raise InputError(str(e)) from e
