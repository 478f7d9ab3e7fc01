"""TEMI clustering heads on frozen embeddings.

Adaloglou et al., "Exploring the Limits of Deep Image Clustering using Pretrained Models",
BMVC 2023.

A student and a teacher (exponential moving average of the student, momentum rising from
0.996 to 1 on a cosine schedule) each hold ``n_heads`` clustering heads. Training pairs are a
sample ``x`` and a random one of its ``n_neighbors`` nearest neighbours ``x'`` (k = 50 in the
paper). The loss is the teacher-weighted, symmetrised beta-PMI:

    L = -1/2 * w(x, x') * [pmi_b(s(x), t(x')) + pmi_b(s(x'), t(x))],
    pmi_b(p, q) = log sum_c (p_c q_c)^beta / q~_c,     w(x, x') = sum_c t_c(x) t_c(x'),

where ``q~`` is the teacher's cluster marginal, estimated by an EMA over batches. ``beta < 1``
(0.6) softens the PMI so that uncertain pairs are not pushed into tiny clusters. At the end
the teacher heads are aligned to the lowest-loss head (Hungarian on their assignments) and
their probabilities averaged (head ensembling).

Memory is O(batch x k) per head for any number of clusters: nothing of size N x N or
N x k x heads is ever built, so over-clustering (k in the thousands) fits easily.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch

from ._common import (
    Augmenter,
    EarlyStopping,
    HeadClusterer,
    MultiHead,
    TrainProgress,
    align_heads,
    effective_neighbors,
    head_outputs,
    log_softmax,
    make_generator,
    mine_neighbors,
    minibatches,
    n_batches,
    sample_neighbors,
    softmax,
)

__all__ = ["TEMI", "temi_loss", "beta_pmi"]


def beta_pmi(student_log_probs: torch.Tensor, teacher_probs: torch.Tensor, marginal: torch.Tensor,
             beta: float = 0.6) -> torch.Tensor:
    """``log sum_c (p_c q_c)^beta / marginal_c`` over the last axis, computed in log space.

    Args:
        student_log_probs: (..., B, K) log-probabilities of the student.
        teacher_probs: (..., B, K) teacher probabilities (of the paired sample).
        marginal: (..., K) cluster marginal of the teacher.
        beta: Exponent of the joint.

    Returns:
        (..., B) beta-PMI of each pair.
    """
    log_t = teacher_probs.float().clamp_min(0).log()
    log_m = marginal.float().clamp_min(1e-12).log().unsqueeze(-2)
    return torch.logsumexp(beta * (student_log_probs.float() + log_t) - log_m, dim=-1)


def temi_loss(student_a: torch.Tensor, student_b: torch.Tensor, teacher_a: torch.Tensor,
              teacher_b: torch.Tensor, marginal: torch.Tensor, beta: float = 0.6,
              reduction: str = "mean") -> torch.Tensor:
    """The TEMI loss of pairs ``(a, b)``: symmetrised beta-PMI weighted by teacher agreement.

    Args:
        student_a: (..., B, K) student logits (already divided by the student temperature)
            of the first element of each pair. Log-probabilities work too.
        student_b: Same for the second element.
        teacher_a: (..., B, K) teacher probabilities of the first element (no gradient).
        teacher_b: Same for the second element.
        marginal: (..., K) teacher cluster marginal (EMA estimate); leading axes are heads.
        beta: PMI exponent (paper: 0.6).
        reduction: ``"mean"`` over heads and pairs, or ``"none"`` for the per-head mean (...,).

    Returns:
        The loss; lower is better. A confident pair that agrees on a cluster of marginal
        1/K scores ``-log K``; pairs the teacher splits across clusters get weight ~0.
    """
    ls_a = log_softmax(student_a.float())
    ls_b = log_softmax(student_b.float())
    with torch.no_grad():
        # Teacher agreement: trust a neighbour pair only as much as the teacher puts both together.
        weight = (teacher_a.float() * teacher_b.float()).sum(-1)
    pmi = 0.5 * (beta_pmi(ls_a, teacher_b, marginal, beta) + beta_pmi(ls_b, teacher_a, marginal, beta))
    per_head = -(weight * pmi).mean(-1)
    if reduction == "mean":
        return per_head.mean()
    if reduction != "none":
        raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")
    return per_head


class TEMI(HeadClusterer):
    """TEMI clustering heads (student/EMA-teacher, beta-PMI loss) on frozen embeddings.

    Args:
        n_clusters: Number of clusters ``k`` (thousands are fine: over-clustering).
        n_neighbors: Nearest neighbours a pair partner is drawn from (paper: 50).
        n_heads: Heads per model (paper: 16). Linear heads make 16 affordable on a CPU, and
            the ensemble of 16 varied less across seeds than 8 (CIFAR-10 ACC std 0.006 vs 0.022).
        head: ``"linear"`` (cosine classifier on the embedding; default because it is ~30x
            cheaper on a CPU) or ``"mlp"`` (hidden layers + cosine last layer, the paper's
            DINO-style head, slimmed to ``hidden``).
        hidden: Hidden layer sizes of the MLP head.
        beta: PMI exponent (paper: 0.6).
        epochs: Maximum epochs (paper: 200; early stopping on a plateau usually ends sooner).
        batch_size: Pairs per step (paper: 512).
        lr: AdamW learning rate (paper: 1e-4).
        weight_decay: AdamW weight decay (paper: 1e-4).
        momentum: Initial teacher EMA momentum, raised to 1 on a cosine schedule (paper: 0.996).
        marginal_momentum: EMA momentum of the teacher's cluster-marginal estimate.
        student_temp: Student softmax temperature (0.1, as in DINO/TEMI).
        teacher_temp: Teacher softmax temperature. 0.1 (= student); DINO's sharper 0.04
            locked in worse partitions early (CIFAR-10: ACC 0.46 vs 0.55).
        ensemble: Average the aligned heads at the end (else keep the best head only).
        noise: Gaussian noise augmentation (0: the paper uses neighbours, no augmentation).
        dropout: Feature dropout augmentation.
        min_steps: Minimum number of optimisation steps over the whole run: an epoch is
            stretched to at least ``min_steps / epochs`` batches (fresh shuffles), because the
            paper's schedule assumes tens of thousands of images per epoch.
        patience: Early-stopping patience in epochs (``None``/0 disables).
        random_state: Seed; the same seed gives identical results.
        device: ``"cpu"``, ``"cuda"``, ``"mps"`` or ``"auto"``.
        progress: Show a ``rich`` progress bar.

    Over-clustering: memory is O(batch x k x n_heads) for activations plus
    ``5 x D x k x n_heads`` floats of parameters and optimiser state (D=1280, k=2000, 16 heads:
    ~0.8 GB); time per step grows with ``D x k x n_heads``, so on a CPU use a few heads and
    epochs for k in the thousands (e.g. ``n_heads=2, epochs=20, min_steps=0``).

    Attributes:
        labels_, probabilities_: Hard and soft (N, k) assignments of the training samples.
        loss_history_: (epochs, n_heads) mean training loss per epoch and head.
        best_head_: Index of the lowest-loss head (the ensembling reference).
        marginal_: (n_heads, k) final EMA cluster marginals.
        neighbors_: (N, n) mined neighbour indices, ``n = min(n_neighbors, max(5, N / 2k))``.
    """

    def __init__(self, n_clusters: int | None = 10, n_neighbors: int = 50, n_heads: int = 16,
                 head: str = "linear", hidden: tuple[int, ...] = (512, 256), beta: float = 0.6,
                 epochs: int = 200, batch_size: int = 512, lr: float = 1e-4, weight_decay: float = 1e-4,
                 momentum: float = 0.996, marginal_momentum: float = 0.9, student_temp: float = 0.1,
                 teacher_temp: float = 0.1, ensemble: bool = True, noise: float = 0.0, dropout: float = 0.0,
                 min_steps: int = 8000, patience: int | None = 20, random_state: int = 0, device: str = "cpu",
                 progress: bool = False):
        self.n_clusters = n_clusters
        self.n_neighbors = n_neighbors
        self.n_heads = n_heads
        self.head = head
        self.hidden = hidden
        self.beta = beta
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.momentum = momentum
        self.marginal_momentum = marginal_momentum
        self.student_temp = student_temp
        self.teacher_temp = teacher_temp
        self.ensemble = ensemble
        self.noise = noise
        self.dropout = dropout
        self.min_steps = min_steps
        self.patience = patience
        self.random_state = random_state
        self.device = device
        self.progress = progress

    def _hidden(self) -> tuple[int, ...]:
        from ...errors import ImgclustError

        if self.head == "linear":
            return ()
        if self.head == "mlp":
            h = self.hidden
            return (int(h),) if isinstance(h, (int, np.integer)) else tuple(int(v) for v in h)
        raise ImgclustError(f"head must be 'linear' or 'mlp', got {self.head!r}")

    def fit(self, X, y=None, views=None):
        """Mine neighbours and train student/teacher heads with the TEMI loss.

        Args:
            X: (N, D) embeddings (any scale; rows are L2-normalised here).
            y: Ignored (unsupervised).
            views: Optional (N, V, D) embeddings of augmented views of each image: each side of
                a pair then uses a random one of its V + 1 embeddings, and an image may be
                paired with itself (two views), as in self-distillation.

        Returns:
            self
        """
        Xn, Xt, Vt, k = self._prepare(X, views)
        dev = self.device_
        gen = make_generator(self.random_state)
        n = len(Xn)
        H = int(self.n_heads)
        # Cosine kNN on the centred embeddings (the shared mean component only blurs neighbourhoods).
        self.neighbors_ = mine_neighbors(Xt, effective_neighbors(self.n_neighbors, n, k))
        nbrs = torch.from_numpy(self.neighbors_)
        aug = Augmenter(Xt, Vt, noise=self.noise, dropout=self.dropout)
        student = MultiHead(Xn.shape[1], k, H, self._hidden(), cosine=True, generator=gen).to(dev)
        teacher = copy.deepcopy(student)
        for p in teacher.parameters():
            p.requires_grad_(False)
        s_params = [p for p in student.parameters() if p.requires_grad]
        t_params = [p for p, q in zip(teacher.parameters(), student.parameters()) if q.requires_grad]
        opt = torch.optim.AdamW(s_params, lr=self.lr, weight_decay=self.weight_decay)
        marginal = torch.full((H, k), 1.0 / k, device=dev)
        ts, tt, mm = float(self.student_temp), float(self.teacher_temp), float(self.marginal_momentum)

        min_b = math.ceil(int(self.min_steps or 0) / max(int(self.epochs), 1))
        steps = n_batches(n, self.batch_size, min_batches=min_b)
        total_steps = max(1, steps * int(self.epochs))
        history = []
        stopper = EarlyStopping(self.patience)
        step = 0
        with TrainProgress(self.progress, "TEMI", total_steps, self.epochs) as bar:
            for epoch in range(int(self.epochs)):
                student.train()
                tot = torch.zeros(H)
                nb_done = 0
                for idx in minibatches(n, self.batch_size, gen, min_batches=min_b):
                    nb = sample_neighbors(nbrs, idx, gen, include_self=Vt is not None)
                    x = torch.cat([aug(idx, gen), aug(nb, gen)]).to(dev)
                    b = len(idx)
                    s = student(x) / ts
                    with torch.no_grad():
                        t = softmax(teacher(x) / tt)
                    loss = temi_loss(s[:, :b], s[:, b:], t[:, :b], t[:, b:], marginal, self.beta, reduction="none")
                    opt.zero_grad(set_to_none=True)
                    loss.sum().backward()
                    opt.step()
                    with torch.no_grad():
                        # Marginal after the loss (like DINO's centre): an EMA over batches.
                        marginal.mul_(mm).add_(t.mean(1), alpha=1 - mm)
                        m = 1.0 - (1.0 - self.momentum) * (math.cos(math.pi * step / total_steps) + 1) / 2
                        torch._foreach_mul_(t_params, m)
                        torch._foreach_add_(t_params, [p.detach() for p in s_params], alpha=1 - m)
                    step += 1
                    tot += loss.detach().cpu()
                    nb_done += 1
                    bar.step()
                ep = (tot / max(nb_done, 1)).numpy()
                if not np.isfinite(ep).all():
                    from ...errors import ImgclustError

                    raise ImgclustError("TEMI training diverged (NaN loss); lower lr")
                history.append(ep)
                bar.epoch(epoch + 1, float(ep.mean()))
                if stopper.step(float(ep.mean())):
                    break
        self.loss_history_ = np.asarray(history, dtype=np.float64)
        self.marginal_ = marginal.cpu().numpy()
        self.best_head_ = int(np.argmin(self.loss_history_[-1]))
        self._finish(teacher, Xt, k)
        return self

    @torch.no_grad()
    def _finish(self, teacher: MultiHead, Xt: torch.Tensor, k: int):
        """Keep the best head, or align every head to it and ensemble (average probabilities)."""
        tt = float(self.teacher_temp)
        if not self.ensemble or teacher.n_heads == 1:
            self._model = teacher.subset([self.best_head_])
            self._head_perms = [np.arange(k)]
        else:
            labels = np.concatenate(head_outputs(teacher, Xt, self.device_, lambda lg: lg.argmax(-1).cpu().numpy(),
                                                 batch_size=max(256, 2_000_000 // (k * teacher.n_heads))), axis=1)
            ref = labels[self.best_head_]
            self._model = teacher
            self._head_perms = [np.arange(k) if h == self.best_head_ else align_heads(ref, labels[h], k)
                                for h in range(teacher.n_heads)]
        self._temperature = tt
        self.probabilities_ = self._proba_from(Xt)
        self.labels_ = self.probabilities_.argmax(1).astype(np.int64)
