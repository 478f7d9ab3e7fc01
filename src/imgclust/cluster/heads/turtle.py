"""TURTLE: the labelling that linear classifiers learn best in every representation space at once.

Gadetsky, Jiang and Brbic, "Let Go of Your Labels with Unsupervised Transfer", ICML 2024.

A *task encoder* proposes soft labels: in each space ``s`` a weight-normalised linear map and a
softmax, averaged over the spaces. For the current labels, *inner* linear classifiers (one per
space) are fitted for ``inner_steps`` Adam steps (warm-started from the previous outer step).
The task encoder then takes one outer step on

    L = sum_s CE(inner_s(z_s), labels) - gamma * sum_s H(mean label proposal of space s),

i.e. it moves towards labellings that every space's linear classifier already predicts well,
while the entropy term keeps the label marginal from collapsing. A labelling that one space
cannot separate linearly (two classes merged there) is penalised by that space, so several
spaces with different blind spots together pin down the labelling none of them finds alone.

Here every space is first centred, projected on its top ``n_components`` principal axes and
scaled to unit mean squared norm (cheaper steps, one learning rate for every encoder), and
``n_heads`` restarts are trained together as batched tensors; the head with the lowest final
objective on all the data (no labels involved) gives ``labels_``.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClusterMixin

from ._turtle_core import (
    Adam,
    InnerClassifiers,
    SpacePrep,
    TaskEncoder,
    outer_objective,
    split_spaces,
)

__all__ = ["TURTLE"]


class TURTLE(ClusterMixin, BaseEstimator):
    """TURTLE clustering on one or several precomputed representation spaces.

    Args:
        n_clusters: Number of clusters ``k``.
        spaces: Widths of the column blocks of ``X`` that are separate spaces (e.g. ``[1280, 1280]``
            for two encoders side by side); ``None`` = one space. ``fit`` also takes a list of arrays.
        gamma: Weight of the label-marginal entropy (the paper's default 10).
        n_steps: Outer (task-encoder) steps.
        inner_steps: Adam steps of the inner classifiers per outer step (the paper's ``M`` = 10).
        batch_size: Rows per outer step (the whole set when smaller).
        outer_lr: Adam learning rate of the task encoder.
        inner_lr: Adam learning rate of the inner classifiers.
        n_heads: Restarts trained together; the lowest final objective wins.
        n_components: Principal axes kept per space (``0`` = keep all).
        random_state: Seed of initialisation and minibatch sampling (the only randomness).
        progress: Show a progress bar with the loss.
    """

    needs_k = True

    def __init__(self, n_clusters: int = 10, spaces=None, gamma: float = 10.0, n_steps: int = 300,
                 inner_steps: int = 10, batch_size: int = 2048, outer_lr: float = 0.01, inner_lr: float = 0.01,
                 n_heads: int = 4, n_components: int = 128, random_state=0, progress: bool = False):
        self.n_clusters = n_clusters
        self.spaces = spaces
        self.gamma = gamma
        self.n_steps = n_steps
        self.inner_steps = inner_steps
        self.batch_size = batch_size
        self.outer_lr = outer_lr
        self.inner_lr = inner_lr
        self.n_heads = n_heads
        self.n_components = n_components
        self.random_state = random_state
        self.progress = progress

    # ------------------------------------------------------------------ fitting

    def _prepare(self, X) -> list[torch.Tensor]:
        blocks = split_spaces(X, self.spaces)
        n = len(blocks[0])
        if not 2 <= int(self.n_clusters) <= n:
            raise ValueError(f"n_clusters must be between 2 and the number of samples ({n}); got {self.n_clusters}")
        for b in blocks:
            if not np.isfinite(b).all():
                raise ValueError("X contains NaN or infinity")
        self.space_dims_ = [b.shape[1] for b in blocks]
        self.preps_ = [SpacePrep(self.n_components or b.shape[1]) for b in blocks]
        return [torch.from_numpy(p.fit_transform(b)) for p, b in zip(self.preps_, blocks)]

    def fit(self, X, y=None):
        """Fit on ``X`` (an (N, D) array split by ``spaces``, or a list of row-aligned arrays)."""
        from ...progress import progress_bar

        Zs = self._prepare(X)
        n, k, heads = len(Zs[0]), int(self.n_clusters), max(1, int(self.n_heads))
        dims = [z.shape[1] for z in Zs]
        gen = torch.Generator().manual_seed(int(np.random.RandomState(self.random_state).randint(2 ** 31)))
        task = TaskEncoder(dims, heads, k, gen)
        inner = InnerClassifiers(dims, heads, k, gen, float(self.inner_lr))
        opt = Adam(task.parameters(), lr=float(self.outer_lr))
        batch = min(int(self.batch_size), n)
        history = []
        with progress_bar(int(self.n_steps), "turtle", bool(self.progress), "step") as adv:
            for _ in range(int(self.n_steps)):
                idx = torch.randperm(n, generator=gen)[:batch]
                history.append(self._step(task, inner, opt, [z[idx] for z in Zs]))
                adv(1, loss=float(history[-1].mean()))
        self.loss_history_ = np.asarray(history, np.float64)
        self.n_iter_ = int(self.n_steps)
        self._finish(task, inner, Zs)
        return self

    def _step(self, task: TaskEncoder, inner: InnerClassifiers, opt, Zb) -> np.ndarray:
        """One bilevel step on a minibatch; returns each head's outer loss."""
        labels, per = task(Zb)
        inner.fit(Zb, labels, int(self.inner_steps))
        opt.zero_grad()
        loss, _, _ = outer_objective(inner, labels, per, Zb, float(self.gamma))
        loss.sum().backward()
        opt.step()
        return loss.detach().numpy().copy()

    def _finish(self, task: TaskEncoder, inner: InnerClassifiers, Zs) -> None:
        """Score every head on all the data (label-free objective) and keep the best one."""
        with torch.no_grad():
            labels, per = task(Zs)
            loss, ce, ent = outer_objective(inner, labels, per, Zs, float(self.gamma))
        self.head_objectives_ = loss.numpy().astype(np.float64)
        self.best_head_ = int(np.argmin(self.head_objectives_))
        self.objective_ = float(self.head_objectives_[self.best_head_])
        self.cross_entropy_ = float(ce[self.best_head_])
        self.marginal_entropy_ = float(ent[self.best_head_])
        self._task = task
        self.probabilities_ = labels[self.best_head_].numpy().astype(np.float32)
        self.labels_ = self.probabilities_.argmax(1).astype(np.int64)

    # --------------------------------------------------------------- prediction

    def predict_proba(self, X) -> np.ndarray:
        """Soft labels of new rows from the best head's task encoder."""
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(self, "labels_")
        blocks = split_spaces(X, self.spaces)
        if [b.shape[1] for b in blocks] != self.space_dims_:
            raise ValueError(f"X has spaces {[b.shape[1] for b in blocks]}, fitted on {self.space_dims_}")
        Zs = [torch.from_numpy(p.transform(b)) for p, b in zip(self.preps_, blocks)]
        with torch.no_grad():
            labels, _ = self._task(Zs)
        return labels[self.best_head_].numpy().astype(np.float32)

    def predict(self, X) -> np.ndarray:
        """Cluster of new rows."""
        return self.predict_proba(X).argmax(1).astype(np.int64)
