"""SCAN on frozen embeddings, head-only variant.

Van Gansbeke et al., "SCAN: Learning to Classify Images without Labels", ECCV 2020.

1. Mine the ``n_neighbors`` nearest neighbours of every embedding (exact cosine, faiss).
2. Train ``n_heads`` clustering heads in parallel with the SCAN loss: each sample and a
   random one of its neighbours (or itself, as in the paper's neighbour sets) must get the
   same cluster (consistency), while the batch-mean assignment must stay spread out
   (entropy term against collapse). Keep the head with the lowest loss.
3. Optional self-labelling: confident samples (max probability above ``threshold``) become
   pseudo-labels and the head is refined with class-balanced cross-entropy on augmented
   inputs.

The paper augments images; here augmentation happens in embedding space (Gaussian noise and
feature dropout) and, when several views of each image were embedded, a random view is used.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ._common import (
    Augmenter,
    EarlyStopping,
    HeadClusterer,
    MultiHead,
    TrainProgress,
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

__all__ = ["SCAN", "scan_loss", "self_label_loss", "entropy"]

_EPS = 1e-8


def entropy(probs: torch.Tensor) -> torch.Tensor:
    """Shannon entropy (nats) over the last axis of probability vectors."""
    p = probs.clamp_min(_EPS)
    return -(p * p.log()).sum(-1)


def scan_loss(anchor_logits: torch.Tensor, neighbor_logits: torch.Tensor, entropy_weight: float = 5.0,
              reduction: str = "mean") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The SCAN loss: neighbour consistency minus weighted entropy of the mean assignment.

    ``consistency = -mean_i log <p(x_i), p(n_i)>`` is 0 exactly when every sample and its
    neighbour put all their mass on the same cluster. ``entropy = H(mean_i p(x_i))`` is
    largest (log k) for a balanced batch and 0 for a collapsed one, so subtracting it
    penalises collapse.

    Args:
        anchor_logits: (..., B, K) logits of the samples (leading axes: heads).
        neighbor_logits: (..., B, K) logits of one neighbour of each sample.
        entropy_weight: Weight of the entropy term (the paper uses 5).
        reduction: ``"mean"`` averages over leading (head) axes; ``"none"`` keeps them.

    Returns:
        ``(total, consistency, entropy)``.
    """
    log_pa = log_softmax(anchor_logits.float())
    log_pn = log_softmax(neighbor_logits.float())
    # log <p_a, p_n> in log space: exact for near one-hot predictions, no 0 * log 0.
    consistency = -torch.logsumexp(log_pa + log_pn, dim=-1).mean(-1)
    ent = entropy(log_pa.exp().mean(-2))
    total = consistency - entropy_weight * ent
    if reduction == "mean":
        return total.mean(), consistency.mean(), ent.mean()
    if reduction != "none":
        raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")
    return total, consistency, ent


def self_label_loss(weak_logits: torch.Tensor, strong_logits: torch.Tensor, threshold: float = 0.99,
                    balanced: bool = True) -> tuple[torch.Tensor, int]:
    """SCAN's confidence-based cross-entropy for self-labelling.

    Samples whose (weakly augmented) prediction exceeds ``threshold`` get their argmax as a
    pseudo-label; the strongly augmented prediction is trained towards it. With ``balanced``
    each pseudo-class is weighted by its inverse frequency in the batch (as in the paper), so
    large clusters do not swallow small ones.

    Args:
        weak_logits: (B, K) logits on clean / weakly augmented inputs (no gradient needed).
        strong_logits: (B, K) logits on augmented inputs.
        threshold: Confidence threshold on the max probability.
        balanced: Inverse-frequency class weights.

    Returns:
        ``(loss, n_confident)``; the loss is 0 (with a graph) when nothing is confident.
    """
    with torch.no_grad():
        prob = softmax(weak_logits.float())
        maxp, target = prob.max(-1)
        mask = maxp > threshold
    n = int(mask.sum())
    if n == 0:
        return strong_logits.sum() * 0.0, 0
    t = target[mask]
    weight = None
    if balanced:
        counts = torch.bincount(t, minlength=strong_logits.shape[-1]).float()
        weight = torch.where(counts > 0, n / counts.clamp_min(1), torch.zeros_like(counts))
    return F.cross_entropy(strong_logits[mask].float(), t, weight=weight), n


class SCAN(HeadClusterer):
    """SCAN clustering heads trained on frozen embeddings.

    Args:
        n_clusters: Number of clusters ``k``.
        n_neighbors: Neighbours mined per sample (paper: 20).
        n_heads: Heads trained in parallel; the lowest-loss one is kept (paper: 10).
        head: ``"linear"`` (paper) or ``"mlp"`` (one hidden layer of ``hidden`` units).
        hidden: Hidden width of the MLP head.
        entropy_weight: Weight of the entropy term (paper: 5).
        epochs: Maximum SCAN epochs (early stopping on a loss plateau may end sooner).
        batch_size: SCAN batch size (paper: 128).
        lr: Adam learning rate. The paper's 1e-4 trains backbone and head end to end; a
            head alone on fixed features needs a larger step.
        weight_decay: Adam weight decay (paper: 1e-4).
        self_label: Run the self-labelling step.
        threshold: Confidence threshold of self-labelling (paper: 0.99).
        self_label_epochs: Maximum self-labelling epochs.
        self_label_batch_size: Self-labelling batch size (paper: 1000).
        noise: Std of the Gaussian noise augmentation (inputs have unit per-dimension variance).
        dropout: Feature-dropout probability of the augmentation.
        min_steps: Minimum number of SCAN optimisation steps: an epoch is stretched to at
            least ``min_steps / epochs`` batches (fresh shuffles) so small collections still get
            enough updates (the paper's epochs are over 50,000 images).
        patience: Early-stopping patience in epochs (``None``/0 disables).
        random_state: Seed; the same seed gives identical results.
        device: ``"cpu"``, ``"cuda"``, ``"mps"`` or ``"auto"``.
        progress: Show a ``rich`` progress bar.

    Attributes:
        labels_: (N,) cluster of each training sample.
        probabilities_: (N, k) soft assignments.
        loss_history_: (epochs, n_heads) mean SCAN loss per epoch and head.
        self_label_history_: Mean self-labelling loss per epoch.
        best_head_: Index of the kept head.
        n_confident_: Samples above ``threshold`` when self-labelling started / ended.
        neighbors_: (N, n) mined neighbour indices, ``n = min(n_neighbors, max(5, N / 2k))``.
    """

    def __init__(self, n_clusters: int | None = 10, n_neighbors: int = 20, n_heads: int = 10,
                 head: str = "linear", hidden: int = 512, entropy_weight: float = 5.0, epochs: int = 100,
                 batch_size: int = 128, lr: float = 1e-3, weight_decay: float = 1e-4, self_label: bool = True,
                 threshold: float = 0.99, self_label_epochs: int = 10, self_label_batch_size: int = 1000,
                 noise: float = 0.5, dropout: float = 0.1, min_steps: int = 2000, patience: int | None = 10,
                 random_state: int = 0, device: str = "cpu", progress: bool = False):
        self.n_clusters = n_clusters
        self.n_neighbors = n_neighbors
        self.n_heads = n_heads
        self.head = head
        self.hidden = hidden
        self.entropy_weight = entropy_weight
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.self_label = self_label
        self.threshold = threshold
        self.self_label_epochs = self_label_epochs
        self.self_label_batch_size = self_label_batch_size
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
            return (int(self.hidden),)
        raise ImgclustError(f"head must be 'linear' or 'mlp', got {self.head!r}")

    def fit(self, X, y=None, views=None):
        """Mine neighbours, train the heads with the SCAN loss, optionally self-label.

        Args:
            X: (N, D) embeddings (any scale; rows are L2-normalised here).
            y: Ignored (unsupervised).
            views: Optional (N, V, D) embeddings of augmented views of each image, used as
                augmentations (a random one of the V + 1 embeddings per draw).

        Returns:
            self
        """
        Xn, Xt, Vt, k = self._prepare(X, views)
        hidden = self._hidden()
        dev = self.device_
        gen = make_generator(self.random_state)
        n = len(Xn)
        # Cosine kNN on the centred embeddings (the shared mean component only blurs neighbourhoods).
        self.neighbors_ = mine_neighbors(Xt, effective_neighbors(self.n_neighbors, n, k))
        nbrs = torch.from_numpy(self.neighbors_)
        aug = Augmenter(Xt, Vt, noise=self.noise, dropout=self.dropout)
        model = MultiHead(Xn.shape[1], k, int(self.n_heads), hidden, cosine=False, generator=gen).to(dev)
        opt = torch.optim.Adam(model.parameters(), lr=self.lr, weight_decay=self.weight_decay)

        min_b = math.ceil(int(self.min_steps or 0) / max(int(self.epochs), 1))
        steps = n_batches(n, self.batch_size, min_batches=min_b)
        sl_steps = n_batches(n, self.self_label_batch_size) if self.self_label else 0
        history = []
        stopper = EarlyStopping(self.patience)
        with TrainProgress(self.progress, "SCAN", steps * self.epochs, self.epochs) as bar:
            for epoch in range(int(self.epochs)):
                model.train()
                tot = torch.zeros(model.n_heads)
                nb_done = 0
                for idx in minibatches(n, self.batch_size, gen, min_batches=min_b):
                    nb = sample_neighbors(nbrs, idx, gen, include_self=True)
                    x = torch.cat([aug(idx, gen), aug(nb, gen)]).to(dev)
                    logits = model(x)
                    total, _, _ = scan_loss(logits[:, :len(idx)], logits[:, len(idx):], self.entropy_weight,
                                            reduction="none")
                    opt.zero_grad(set_to_none=True)
                    total.sum().backward()  # heads are independent: the sum trains each on its own loss
                    opt.step()
                    tot += total.detach().cpu()
                    nb_done += 1
                    bar.step()
                ep = (tot / max(nb_done, 1)).numpy()
                history.append(ep)
                bar.epoch(epoch + 1, float(ep.min()))
                if stopper.step(float(ep.min())):
                    break
            self.loss_history_ = np.asarray(history, dtype=np.float64)
            # Lowest loss over the last epoch picks the head (the paper picks on its loss too).
            self.best_head_ = int(np.argmin(self.loss_history_[-1]))
            head = model.subset([self.best_head_])
            self.self_label_history_ = []
            self.n_confident_ = (0, 0)
            if self.self_label and self.self_label_epochs > 0:
                bar.set_phase("SCAN self-label", sl_steps * self.self_label_epochs, self.self_label_epochs)
                self._self_label(head, aug, Xt, gen, n, bar)
        self._model, self._head_perms, self._temperature = head, [np.arange(k)], 1.0
        self.probabilities_ = self._proba_from(Xt)
        self.labels_ = self.probabilities_.argmax(1).astype(np.int64)
        return self

    def _n_confident(self, head: MultiHead, Xt: torch.Tensor) -> int:
        count = 0

        def fn(logits):
            nonlocal count
            count += int((softmax(logits[0].float()).max(-1).values > self.threshold).sum())

        head_outputs(head, Xt, self.device_, fn)
        return count

    def _self_label(self, head: MultiHead, aug: Augmenter, Xt: torch.Tensor, gen: torch.Generator, n: int,
                    bar: TrainProgress):
        dev = self.device_
        start = self._n_confident(head, Xt)
        if start == 0:  # nothing confident: self-labelling would be a no-op
            self.n_confident_ = (0, 0)
            return
        opt = torch.optim.Adam(head.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        stopper = EarlyStopping(self.patience)
        for epoch in range(int(self.self_label_epochs)):
            head.train()
            tot, nb_done = 0.0, 0
            for idx in minibatches(n, self.self_label_batch_size, gen):
                with torch.no_grad():
                    weak = head(aug(idx, gen, augment=False).to(dev))[0]
                strong = head(aug(idx, gen).to(dev))[0]
                loss, _ = self_label_loss(weak, strong, self.threshold)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                tot += float(loss.detach())
                nb_done += 1
                bar.step()
            ep = tot / max(nb_done, 1)
            self.self_label_history_.append(ep)
            bar.epoch(epoch + 1, ep)
            if stopper.step(ep):
                break
        self.n_confident_ = (start, self._n_confident(head, Xt))
