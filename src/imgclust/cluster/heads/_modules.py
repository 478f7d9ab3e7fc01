"""The heads as torch modules, and what is computed from their logits.

* :class:`MultiHead`: ``H`` independent heads (linear or MLP, optional cosine last layer)
  evaluated in one batched module, so ten heads cost about as much as one big matmul.
* :func:`log_softmax` / :func:`softmax`: fast for few clusters on the CPU.
* :func:`head_outputs`: apply a module in batches; :func:`align_heads`: Hungarian match of
  two heads' cluster ids, for ensembling.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from torch import nn

__all__ = ["MultiHead", "log_softmax", "softmax", "head_outputs", "align_heads"]


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
def head_outputs(module: MultiHead, X, device: str, fn, batch_size: int = 4096):
    """Apply ``module`` to ``X`` (a tensor, or rows read on demand) in batches; ``fn`` on each (H, B, K) block.

    Returns the list of ``fn`` results; keeps memory at one batch of inputs and logits.
    """
    from . import _source

    module.eval()
    out = []
    batch_size = max(1, min(int(batch_size), _source.READ_BATCH))
    for i in range(0, len(X), batch_size):
        x = X[i:i + batch_size]
        out.append(fn(module((x if isinstance(x, torch.Tensor) else torch.from_numpy(x)).to(device))))
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
