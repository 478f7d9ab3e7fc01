"""Shared machinery of the clustering heads (SCAN, TEMI) trained on frozen embeddings.

* :class:`MultiHead`: ``H`` independent heads (linear or MLP, optional cosine last layer)
  evaluated in one batched module, so ten heads cost about as much as one big matmul.
* :class:`InputScaler`: rows L2-normalised, then centred and globally rescaled so the heads
  see unit average per-dimension variance whatever the encoder (CNN features are all
  positive, which makes an uncentred linear head slow to train).
* :class:`Augmenter`: embedding-space augmentation (Gaussian noise, feature dropout) and,
  when extra embedded views of each image are given, a random view per sample.
* neighbour mining (exact cosine kNN with faiss), minibatch iteration with a local
  ``torch.Generator``, early stopping on a loss plateau, a ``rich`` progress bar, and head
  alignment (Hungarian) for ensembling.
* :class:`HeadClusterer`: the scikit-learn estimator base (``predict``/``predict_proba``).

Everything random draws from a generator seeded with ``random_state`` (never global seeds),
on the CPU, so a seed gives the same result on every run.
"""

from __future__ import annotations

import contextlib
import math
from typing import Iterator, Sequence

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClusterMixin
from torch import nn

from ...errors import ImgclustError

__all__ = [
    "MultiHead", "InputScaler", "Augmenter", "EarlyStopping", "TrainProgress", "HeadClusterer",
    "as_features", "as_views", "mine_neighbors", "effective_neighbors", "minibatches", "make_generator", "align_heads",
    "check_k", "resolve_torch_device", "log_softmax", "softmax",
]


# --------------------------------------------------------------------------- inputs


def as_features(X, name: str = "X") -> np.ndarray:
    """Validate a 2-D float array and L2-normalise its rows (float32, C-contiguous)."""
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2:
        raise ImgclustError(f"{name} must be a 2-D array (images x dimensions), got shape {X.shape}")
    if len(X) == 0:
        raise ImgclustError(f"{name} is empty")
    if not np.isfinite(X).all():
        raise ImgclustError(f"{name} contains NaN or infinite values")
    return np.ascontiguousarray(X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12))


def as_views(views, n: int, dim: int) -> np.ndarray | None:
    """Validate extra views ``(N, V, D)`` (a single view may be ``(N, D)``); rows normalised."""
    if views is None:
        return None
    V = np.asarray(views, dtype=np.float32)
    if V.ndim == 2:
        V = V[:, None, :]
    if V.ndim != 3 or V.shape[0] != n or V.shape[2] != dim:
        raise ImgclustError(f"views must have shape (N={n}, V, D={dim}); got {V.shape}")
    if V.shape[1] == 0:
        return None
    flat = as_features(V.reshape(-1, dim), "views")
    return flat.reshape(V.shape)


def check_k(n: int, k) -> int:
    """The number of clusters as an int, with the same errors as the classic clusterers."""
    if k is None:
        raise ImgclustError("this method needs a number of clusters: pass --k N or --k auto")
    k = int(k)
    if k < 2:
        raise ImgclustError(f"k must be at least 2 (got {k})")
    if k > n:
        raise ImgclustError(f"k={k} is larger than the number of images ({n})")
    return k


def resolve_torch_device(device: str) -> str:
    from ...encoders.base import resolve_device

    return resolve_device(device)


class InputScaler:
    """Centre and globally rescale L2-normalised embeddings (a fixed affine map).

    The mean is subtracted (pretrained features share a large common component that carries
    no cluster information) and everything is divided by one scalar so the average
    per-dimension variance is 1: default layer initialisations then give O(1) logits for
    any embedding dimension. One global scale (not per-dimension whitening) keeps the
    cosine geometry the neighbours were mined in.
    """

    def fit(self, X: np.ndarray) -> InputScaler:
        self.mean_ = X.mean(0).astype(np.float32)
        var = float(((X - self.mean_) ** 2).sum(1).mean()) / X.shape[1]
        self.scale_ = float(np.sqrt(max(var, 1e-12)))
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        return ((X - self.mean_) / self.scale_).astype(np.float32)


def effective_neighbors(n_neighbors: int, n: int, n_clusters: int) -> int:
    """Neighbours actually mined: at most half the average cluster size (and at least 5).

    The papers' 20 (SCAN) or 50 (TEMI) neighbours assume thousands of images per cluster; on a
    few hundred images they would reach far into other clusters.
    """
    cap = max(5, n // (2 * max(int(n_clusters), 1)))
    return int(max(1, min(int(n_neighbors), cap, n - 1)))


def mine_neighbors(X: np.ndarray, k: int) -> np.ndarray:
    """Indices (N, k) of each row's ``k`` most cosine-similar other rows (faiss, exact)."""
    from ...knn import knn

    k = max(1, min(int(k), len(X) - 1))
    idx, _ = knn(X, k)
    return np.ascontiguousarray(idx, dtype=np.int64)


def log_softmax(x: torch.Tensor) -> torch.Tensor:
    """``log_softmax`` over the last axis, fast for few clusters.

    PyTorch's CPU softmax kernels vectorise along the softmax axis and are several times
    slower than a few elementwise ops when that axis is short (k = 10).
    """
    if x.shape[-1] >= 64:
        return torch.log_softmax(x, dim=-1)
    z = x - x.detach().amax(-1, keepdim=True)
    return z - z.exp().sum(-1, keepdim=True).log()


def softmax(x: torch.Tensor) -> torch.Tensor:
    """``softmax`` over the last axis (see :func:`log_softmax`)."""
    if x.shape[-1] >= 64:
        return torch.softmax(x, dim=-1)
    e = (x - x.detach().amax(-1, keepdim=True)).exp()
    return e / e.sum(-1, keepdim=True)


# --------------------------------------------------------------------------- randomness


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


def sample_neighbors(neighbors: torch.Tensor, idx: torch.Tensor, gen: torch.Generator,
                     include_self: bool = False) -> torch.Tensor:
    """One uniformly drawn neighbour of each index in ``idx`` (optionally itself too)."""
    k = neighbors.shape[1]
    if include_self:
        pick = torch.randint(0, k + 1, (len(idx),), generator=gen)
        nb = neighbors[idx, pick.clamp(max=k - 1)]
        return torch.where(pick == k, idx, nb)
    pick = torch.randint(0, k, (len(idx),), generator=gen)
    return neighbors[idx, pick]


class Augmenter:
    """Embedding-space augmentation standing in for the papers' image augmentations.

    Args:
        X: (N, D) scaled inputs (CPU tensor).
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
        x = self.X[idx]
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


# --------------------------------------------------------------------------- heads


class MultiHead(nn.Module):
    """``n_heads`` independent clustering heads computed in one batched pass.

    ``hidden=()`` gives linear heads; ``hidden=(512,)`` a one-hidden-layer MLP (GELU). The
    first layer of all heads reads the same input, so it is one (D, H*hidden) matmul; later
    layers are batched matmuls over heads. With ``cosine=True`` the last layer is a cosine
    classifier (L2-normalised features and weight columns, as in the DINO/TEMI head), so the
    logits lie in [-1, 1] and a temperature sets their sharpness.

    Args:
        in_dim: Input dimension.
        n_clusters: Output size of every head.
        n_heads: Number of heads.
        hidden: Hidden layer sizes.
        cosine: Cosine last layer.
        generator: Generator for the initialisation (PyTorch's default uniform fan-in init);
            a fixed local one when ``None``.

    ``forward(x)`` maps (B, in_dim) to logits (n_heads, B, n_clusters).
    """

    def __init__(self, in_dim: int, n_clusters: int, n_heads: int = 1, hidden: Sequence[int] = (),
                 cosine: bool = False, generator: torch.Generator | None = None):
        super().__init__()
        self.in_dim, self.n_clusters, self.n_heads = int(in_dim), int(n_clusters), int(n_heads)
        self.hidden, self.cosine = tuple(int(h) for h in hidden), bool(cosine)
        dims = (self.in_dim, *self.hidden, self.n_clusters)
        H = self.n_heads
        if generator is None:  # never draw from the global RNG
            generator = torch.Generator().manual_seed(0)
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for li, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
            bound = 1.0 / math.sqrt(a)
            # First layer stored (in, H, out): viewed as (in, H*out) it serves all heads in one matmul.
            shape = (a, H, b) if li == 0 else (H, a, b)
            self.weights.append(nn.Parameter(torch.empty(shape).uniform_(-bound, bound, generator=generator)))
            if li == len(dims) - 2 and self.cosine:
                self.biases.append(nn.Parameter(torch.zeros(H, 1, 0), requires_grad=False))
            else:
                self.biases.append(nn.Parameter(torch.empty(H, 1, b).uniform_(-bound, bound, generator=generator)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        H, n_layers = self.n_heads, len(self.weights)
        w0 = self.weights[0]
        if n_layers == 1 and self.cosine:
            w = nn.functional.normalize(w0, dim=0).reshape(self.in_dim, -1)
            h = nn.functional.normalize(x, dim=-1) @ w
            # contiguous (H, B, K): softmax over a strided last axis is ~50x slower on CPU
            return h.view(len(x), H, -1).transpose(0, 1).contiguous()
        h = (x @ w0.reshape(self.in_dim, -1)).view(len(x), H, -1).transpose(0, 1).contiguous() + self.biases[0]
        for li in range(1, n_layers):
            h = nn.functional.gelu(h)
            w = self.weights[li]
            if li == n_layers - 1 and self.cosine:
                h = torch.bmm(nn.functional.normalize(h, dim=-1), nn.functional.normalize(w, dim=1))
            else:
                h = torch.baddbmm(self.biases[li], h, w)
        return h

    @torch.no_grad()
    def subset(self, heads: Sequence[int]) -> MultiHead:
        """A new module with copies of the given heads only."""
        heads = torch.as_tensor(list(heads), dtype=torch.long)
        sub = MultiHead(self.in_dim, self.n_clusters, len(heads), self.hidden, self.cosine)
        sub.to(self.weights[0].device)
        for li, (src, dst) in enumerate(zip(self.weights, sub.weights)):
            dst.copy_(src[:, heads] if li == 0 else src[heads])
        for src, dst in zip(self.biases, sub.biases):
            dst.copy_(src[heads])
        return sub


@torch.no_grad()
def head_outputs(module: MultiHead, X: torch.Tensor, device: str, fn, batch_size: int = 4096):
    """Apply ``module`` to ``X`` in batches and ``fn`` to each (H, B, K) logit block.

    Returns the list of ``fn`` results; keeps memory at one batch of logits.
    """
    module.eval()
    out = []
    for i in range(0, len(X), batch_size):
        out.append(fn(module(X[i:i + batch_size].to(device))))
    return out


def align_heads(ref_labels: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Permutation ``perm`` with ``perm[c]`` = the reference cluster matched to cluster ``c``.

    Cluster ids of independently trained heads are arbitrary; the Hungarian match of their
    argmax assignments maps one head onto another so their probabilities can be averaged.
    """
    from scipy.optimize import linear_sum_assignment

    table = np.zeros((k, k), dtype=np.int64)
    np.add.at(table, (labels, ref_labels), 1)
    rows, cols = linear_sum_assignment(-table)
    perm = np.empty(k, dtype=np.int64)
    perm[rows] = cols
    return perm


# --------------------------------------------------------------------------- training loop


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


# --------------------------------------------------------------------------- estimator base


class HeadClusterer(ClusterMixin, BaseEstimator):
    """Base of the head estimators: input handling, ``predict`` and ``predict_proba``.

    Subclasses implement ``fit`` and set ``self._model`` (a :class:`MultiHead`),
    ``self._head_perms`` (per-head permutation to the reference head, for ensembling) and
    ``self._temperature`` (logit temperature, 1 for plain logits).
    """

    needs_k = True

    # ---- helpers for subclasses
    def _prepare(self, X, views=None):
        Xn = as_features(X)
        k = check_k(len(Xn), self.n_clusters)
        if len(Xn) < 3:
            raise ImgclustError(f"{type(self).__name__} needs at least 3 images (got {len(Xn)})")
        Vn = as_views(views, len(Xn), Xn.shape[1])
        self.scaler_ = InputScaler().fit(Xn)
        Xt = torch.from_numpy(self.scaler_.transform(Xn))
        Vt = None
        if Vn is not None:
            Vt = torch.from_numpy(self.scaler_.transform(Vn.reshape(-1, Vn.shape[2])).reshape(Vn.shape))
        self.n_features_in_ = Xn.shape[1]
        self.device_ = resolve_torch_device(self.device)
        return Xn, Xt, Vt, k

    def _transform(self, X) -> torch.Tensor:
        if not hasattr(self, "_model"):
            from sklearn.exceptions import NotFittedError

            raise NotFittedError(f"{type(self).__name__} is not fitted yet; call fit first")
        Xn = as_features(X)
        if Xn.shape[1] != self.n_features_in_:
            raise ImgclustError(f"X has {Xn.shape[1]} dimensions; the model was fitted on {self.n_features_in_}")
        return torch.from_numpy(self.scaler_.transform(Xn))

    def _proba_from(self, Xt: torch.Tensor) -> np.ndarray:
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
