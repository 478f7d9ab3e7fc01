"""TURTLE's computations: per-space preparation, the vectorised task encoder and the bilevel step.

Everything is batched over ``H`` independent heads (restarts): every weight tensor has a leading
head axis, so H restarts cost one set of batched matrix products instead of H Python loops.
Kept apart from the estimator (``turtle.py``) and from the other heads' helpers on purpose.
"""

from __future__ import annotations

import math

import numpy as np
import torch


def split_spaces(X, spaces) -> list[np.ndarray]:
    """One float32 (N, d_s) array per representation space.

    ``X`` is a list/tuple of arrays (one per space, rows aligned) or one (N, D) array whose columns
    are the spaces side by side, with ``spaces`` their widths (``None`` = one space).
    """
    if isinstance(X, (list, tuple)):
        blocks = [np.asarray(b, np.float32) for b in X]
    else:
        X = np.asarray(X, np.float32)
        widths = [X.shape[1]] if spaces is None else [int(w) for w in spaces]
        if sum(widths) != X.shape[1] or min(widths) < 1:
            raise ValueError(f"spaces {list(widths)} do not add up to the {X.shape[1]} columns of X")
        edges = np.cumsum([0] + widths)
        blocks = [X[:, a:b] for a, b in zip(edges[:-1], edges[1:])]
    if len({len(b) for b in blocks}) != 1:
        raise ValueError(f"spaces have different numbers of rows: {[len(b) for b in blocks]}")
    return blocks


class SpacePrep:
    """Centre a space, project it on its top principal axes and scale it to unit mean squared norm.

    Linear classifiers then see every space at the same scale whatever its encoder's dimension,
    and the projection caps the cost of a step (the discarded axes carry little variance).
    """

    def __init__(self, n_components: int):
        self.n_components = n_components

    def fit_transform(self, Z: np.ndarray) -> np.ndarray:
        Z = np.asarray(Z, np.float64)
        self.mean_ = Z.mean(0)
        Zc = Z - self.mean_
        d = min(self.n_components, Zc.shape[1], max(1, len(Zc) - 1))
        if d < Zc.shape[1]:
            cov = Zc.T @ Zc / max(1, len(Zc) - 1)
            vals, vecs = np.linalg.eigh(cov)
            self.components_ = vecs[:, ::-1][:, :d]
            # eigh's sign is arbitrary across LAPACK builds: fix it so results do not depend on it.
            self.components_ *= np.sign(self.components_[np.abs(self.components_).argmax(0), range(d)])
        else:
            self.components_ = np.eye(Zc.shape[1])
        P = Zc @ self.components_
        self.scale_ = 1.0 / max(math.sqrt((P ** 2).sum(1).mean()), 1e-12)
        return (P * self.scale_).astype(np.float32)

    def transform(self, Z: np.ndarray) -> np.ndarray:
        return (((np.asarray(Z, np.float64) - self.mean_) @ self.components_) * self.scale_).astype(np.float32)


def _linear(dims, heads, k, gen, scale_by_dim=True):
    """Per space: (H, d, k) weights and (H, k) biases, PyTorch's default Linear init range."""
    out = []
    for d in dims:
        bound = 1.0 / math.sqrt(d) if scale_by_dim else 1.0
        w = (torch.rand(heads, d, k, generator=gen) * 2 - 1) * bound
        b = (torch.rand(heads, k, generator=gen) * 2 - 1) * bound
        out.append((w.requires_grad_(), b.requires_grad_()))
    return out


class TaskEncoder:
    """H heads x S spaces of weight-normalised linear maps; labels = mean over spaces of softmax."""

    def __init__(self, dims, heads: int, k: int, gen: torch.Generator):
        self.v = []
        for w, b in _linear(dims, heads, k, gen):
            with torch.no_grad():
                g = w.norm(dim=1)  # (H, k): weight norm's gain per output unit, initialised at ||v||
            self.v.append((w, g.clone().requires_grad_(), b))

    def parameters(self) -> list[torch.Tensor]:
        return [t for triple in self.v for t in triple]

    def per_space(self, Zs) -> list[torch.Tensor]:
        """Softmax label proposal of each space, each (H, B, k)."""
        out = []
        for (v, g, b), z in zip(self.v, Zs):
            w = v * (g / v.norm(dim=1).clamp_min(1e-12)).unsqueeze(1)
            out.append(torch.softmax(torch.einsum("nd,hdk->hnk", z, w) + b.unsqueeze(1), dim=-1))
        return out

    def __call__(self, Zs) -> tuple[torch.Tensor, list[torch.Tensor]]:
        per = self.per_space(Zs)
        return sum(per) / len(per), per


class Adam:
    """Plain Adam (Kingma and Ba) on a list of leaf tensors.

    ``torch.optim`` would do the same, but its first use imports ``torch._dynamo`` (tens of
    seconds on a busy CPU) and adds per-step overhead that dominates steps this small.
    """

    def __init__(self, params: list[torch.Tensor], lr: float, betas=(0.9, 0.999), eps: float = 1e-8):
        self.params, self.lr, self.betas, self.eps, self.t = params, lr, betas, eps, 0
        self.m = [torch.zeros_like(p) for p in params]
        self.v = [torch.zeros_like(p) for p in params]

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        self.t += 1
        b1, b2 = self.betas
        c1, c2 = 1 - b1 ** self.t, 1 - b2 ** self.t
        for p, m, v in zip(self.params, self.m, self.v):
            if p.grad is None:
                continue
            m.mul_(b1).add_(p.grad, alpha=1 - b1)
            v.mul_(b2).addcmul_(p.grad, p.grad, value=1 - b2)
            p.addcdiv_(m, (v / c2).sqrt_().add_(self.eps), value=-self.lr / c1)


class InnerClassifiers:
    """One plain linear classifier per space and head, fitted to the current labels by Adam."""

    def __init__(self, dims, heads: int, k: int, gen: torch.Generator, lr: float):
        self.wb = _linear(dims, heads, k, gen)
        self.opt = Adam([t for pair in self.wb for t in pair], lr=lr)

    def logits(self, Zs) -> list[torch.Tensor]:
        return [torch.einsum("nd,hdk->hnk", z, w) + b.unsqueeze(1) for (w, b), z in zip(self.wb, Zs)]

    def fit(self, Zs, labels: torch.Tensor, steps: int) -> None:
        target = labels.detach()
        for _ in range(steps):
            self.opt.zero_grad()
            soft_cross_entropy(self.logits(Zs), target).sum().backward()
            self.opt.step()


def soft_cross_entropy(logits: list[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
    """Sum over spaces of the mean cross-entropy of (H, B, k) logits against soft targets: (H,)."""
    return sum(-(target * torch.log_softmax(lg, dim=-1)).sum(-1).mean(-1) for lg in logits)


def marginal_entropy(per_space: list[torch.Tensor]) -> torch.Tensor:
    """Sum over spaces of the entropy of each head's label marginal: (H,)."""
    return sum(torch.special.entr(p.mean(1)).sum(-1) for p in per_space)


def outer_objective(inner: InnerClassifiers, labels: torch.Tensor, per_space: list[torch.Tensor], Zs,
                    gamma: float):
    """TURTLE's outer loss per head, ``CE(inner(z), labels) - gamma * H(marginal)``, and its two terms.

    The inner classifiers are held fixed (first-order approximation of the bilevel gradient, as
    in the paper's reference implementation): the gradient reaches the task encoder through the
    labels only.
    """
    with torch.no_grad():
        fixed = inner.logits(Zs)
    ce = soft_cross_entropy(fixed, labels)
    ent = marginal_entropy(per_space)
    return ce - gamma * ent, ce, ent
