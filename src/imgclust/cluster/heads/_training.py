"""The training loop's parts: seeded randomness, minibatches, augmentation, stopping, progress.

* :func:`make_generator`: a local CPU ``torch.Generator`` seeded with ``random_state`` (global
  seeds are never touched), so a seed gives the same result on every run.
* :func:`minibatches` / :func:`n_batches`: shuffled index batches for one epoch.
* :class:`Augmenter`: embedding-space augmentation (Gaussian noise, feature dropout) and, when
  extra embedded views of each image are given, a random view per sample.
* :class:`EarlyStopping` on a loss plateau; :class:`TrainProgress`, a ``rich`` progress bar.
"""

from __future__ import annotations

import contextlib
import math
from typing import Iterator

import numpy as np
import torch

__all__ = ["make_generator", "minibatches", "n_batches", "Augmenter", "EarlyStopping", "TrainProgress"]


def make_generator(random_state) -> torch.Generator:
    """A CPU generator seeded from ``random_state`` (global RNG state is never touched)."""
    seed = int(np.random.SeedSequence(int(random_state or 0)).generate_state(1)[0])
    return torch.Generator(device="cpu").manual_seed(seed)


def minibatches(n: int, batch_size: int, gen: torch.Generator, drop_last: bool = True,
                min_batches: int = 0) -> Iterator[torch.Tensor]:
    """Shuffled index batches for one epoch.

    ``drop_last`` keeps batch statistics honest (the entropy / marginal terms are batch
    estimates) unless the data is smaller than one batch. With ``min_batches`` the epoch
    continues over fresh permutations until that many batches were drawn: the papers' epoch
    counts assume tens of thousands of images, and a few hundred images would otherwise get
    only a handful of updates.
    """
    bs = max(1, min(batch_size, n))
    done = 0
    while True:
        perm = torch.randperm(n, generator=gen)
        stop = n - (n % bs) if drop_last and n >= bs else n
        for i in range(0, stop, bs):
            yield perm[i:i + bs]
            done += 1
        if done >= min_batches:
            return


def n_batches(n: int, batch_size: int, drop_last: bool = True, min_batches: int = 0) -> int:
    """Number of batches :func:`minibatches` yields per epoch."""
    bs = max(1, min(batch_size, n))
    per = n // bs if drop_last else math.ceil(n / bs)
    return per * max(1, math.ceil(min_batches / per)) if min_batches else per


class Augmenter:
    """Embedding-space augmentation standing in for the papers' image augmentations.

    Args:
        X: (N, D) scaled inputs: a CPU tensor, or :class:`~._source.ScaledRows` read batch by batch.
        views: Optional (N, V, D) scaled extra views. When given, each draw picks one of the
            ``V + 1`` embeddings of the image (the original or a view) at random: real
            augmentations beat synthetic noise.
        noise: Std of additive Gaussian noise, relative to the unit per-dimension variance.
        dropout: Probability of zeroing each feature (rescaled by ``1 / (1 - p)``).
    """

    def __init__(self, X: torch.Tensor, views: torch.Tensor | None = None, noise: float = 0.0,
                 dropout: float = 0.0):
        self.X, self.views = X, views
        self.noise, self.dropout = float(noise), float(dropout)

    def __call__(self, idx: torch.Tensor, gen: torch.Generator, augment: bool = True) -> torch.Tensor:
        x = self.X[idx] if isinstance(self.X, torch.Tensor) else self.X.rows(idx)  # only this batch is read
        if not augment:
            return x
        if self.views is not None:
            v = torch.randint(0, self.views.shape[1] + 1, (len(idx),), generator=gen)
            use = v > 0
            if use.any():
                x = x.clone()
                x[use] = self.views[idx[use], v[use] - 1]
        if self.dropout > 0:
            keep = torch.rand(x.shape, generator=gen) >= self.dropout
            x = x * keep / (1.0 - self.dropout)
        if self.noise > 0:
            x = x + self.noise * torch.randn(x.shape, generator=gen)
        return x


class EarlyStopping:
    """Stop when the monitored loss has not improved by ``min_delta`` for ``patience`` epochs.

    ``min_delta`` is absolute plus a relative part (``rel_delta * |best|``) so the criterion
    works for losses of any scale (SCAN's total loss is negative, TEMI's around -log k).
    """

    def __init__(self, patience: int | None = 10, min_delta: float = 1e-4, rel_delta: float = 1e-4):
        self.patience, self.min_delta, self.rel_delta = patience, float(min_delta), float(rel_delta)
        self.best = math.inf
        self.bad_epochs = 0

    def step(self, value: float) -> bool:
        """Record an epoch's loss; ``True`` when training should stop."""
        if not self.patience or self.patience <= 0:
            return False
        if value < self.best - (self.min_delta + self.rel_delta * abs(self.best if math.isfinite(self.best) else 0)):
            self.best = value
            self.bad_epochs = 0
            return False
        self.bad_epochs += 1
        return self.bad_epochs >= self.patience


class TrainProgress(contextlib.AbstractContextManager):
    """A ``rich`` progress bar over training steps showing epoch, loss and it/s.

    Disabled (a no-op, nothing imported) unless ``enabled``; the estimators default to quiet
    and the pipeline passes ``progress=True``.
    """

    def __init__(self, enabled: bool, description: str, total_steps: int, n_epochs: int):
        self.enabled = bool(enabled)
        self.description, self.total, self.n_epochs = description, int(total_steps), int(n_epochs)
        self._progress = None
        self._task = None

    def __enter__(self):
        if not self.enabled:
            return self
        from rich.progress import BarColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn
        from rich.text import Text

        class _Rate(ProgressColumn):
            def render(self, task):
                speed = task.finished_speed or task.speed
                return Text(f"{speed:6.1f} it/s" if speed else "    -- it/s", style="progress.data.speed")

        self._progress = Progress(
            TextColumn("[bold blue]{task.description}"), BarColumn(),
            TextColumn("epoch {task.fields[epoch]}/{task.fields[epochs]}"),
            TextColumn("loss {task.fields[loss]}"), _Rate(), TimeElapsedColumn(),
            transient=False)
        self._progress.__enter__()
        self._task = self._progress.add_task(self.description, total=self.total, epoch=0,
                                             epochs=self.n_epochs, loss="   --   ")
        return self

    def set_phase(self, description: str, total_steps: int, n_epochs: int):
        """Start a new phase (e.g. SCAN's self-labelling) on a fresh bar."""
        if self._progress is None:
            return
        self._progress.update(self._task, completed=self._progress.tasks[-1].total)
        self._task = self._progress.add_task(description, total=total_steps, epoch=0, epochs=n_epochs,
                                             loss="   --   ")

    def step(self, n: int = 1):
        if self._progress is not None:
            self._progress.advance(self._task, n)

    def epoch(self, epoch: int, loss: float):
        if self._progress is not None:
            self._progress.update(self._task, epoch=epoch, loss=f"{loss:8.4f}")

    def __exit__(self, *exc):
        if self._progress is not None:
            task = self._progress.tasks[-1]
            self._progress.update(self._task, completed=task.total)
            self._progress.__exit__(*exc)
        return False
