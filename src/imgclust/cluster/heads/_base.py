""":class:`HeadClusterer`: the scikit-learn estimator base of the heads (``predict``/``predict_proba``)."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClusterMixin

from ...errors import InputError
from .._validation import validated
from ._inputs import as_views, check_k, resolve_torch_device
from ._modules import head_outputs, softmax
from ._source import ScaledRows, fit_scaler

__all__ = ["HeadClusterer"]


class HeadClusterer(ClusterMixin, BaseEstimator):
    """Base of the head estimators: input handling, ``predict`` and ``predict_proba``.

    Subclasses implement ``fit`` and set ``self._model`` (a :class:`MultiHead`),
    ``self._head_perms`` (per-head permutation to the reference head, for ensembling) and
    ``self._temperature`` (logit temperature, 1 for plain logits).
    """

    needs_k = True

    # ---- helpers for subclasses
    def _prepare(self, X, views=None):
        # scikit-learn's own validation first: 2-D, finite, dense, real, non-empty; n_features_in_.
        # Rows stay where they are (an array, a memory map, the store's lazy view): read per batch.
        Xn = validated(self, X, lazy_ok=True)
        if len(Xn) < 3:
            raise InputError(f"{type(self).__name__} needs at least 3 images (got {len(Xn)} "
                             f"sample{'s' if len(Xn) != 1 else ''})")
        k = check_k(len(Xn), self.n_clusters)
        Vn = as_views(views, len(Xn), Xn.shape[1])
        self.scaler_ = fit_scaler(Xn)
        Xt = ScaledRows(Xn, self.scaler_)
        Vt = None
        if Vn is not None:
            Vt = torch.from_numpy(self.scaler_.transform(Vn.reshape(-1, Vn.shape[2])).reshape(Vn.shape))
        self.n_features_in_ = Xn.shape[1]
        self.device_ = resolve_torch_device(self.device)
        return Xn, Xt, Vt, k

    def _transform(self, X) -> ScaledRows:
        return ScaledRows(validated(self, X, reset=False, lazy_ok=True), self.scaler_)

    def _proba_from(self, Xt: ScaledRows) -> np.ndarray:
        """Soft assignments of scaled inputs: softmax of every kept head, aligned, averaged."""
        model, perms, temp = self._model, self._head_perms, self._temperature
        k = model.n_clusters
        out = np.zeros((len(Xt), k), dtype=np.float32)
        pos = 0

        def acc(logits):
            nonlocal pos
            p = softmax(logits.float() / temp).cpu().numpy()
            b = p.shape[1]
            block = np.zeros((b, k), dtype=np.float32)
            for h in range(p.shape[0]):
                # column c of head h is reference cluster perms[h][c]
                block[:, perms[h]] += p[h]
            out[pos:pos + b] = block / p.shape[0]
            pos += b

        head_outputs(model, Xt, self.device_, acc, batch_size=max(256, 2_000_000 // max(k * model.n_heads, 1)))
        return out

    # ---- public API
    def predict_proba(self, X) -> np.ndarray:
        """Soft cluster assignments (N, n_clusters); rows sum to 1."""
        return self._proba_from(self._transform(X))

    def predict(self, X) -> np.ndarray:
        """Hard cluster assignments (argmax of :meth:`predict_proba`)."""
        return self.predict_proba(X).argmax(1).astype(np.int64)

    def fit_predict(self, X, y=None, views=None, **kwargs):
        return self.fit(X, y, views=views, **kwargs).labels_
