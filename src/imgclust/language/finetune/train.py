"""One epoch of contrastive training, its loss, and the seeded block training runs in.

* **Loss**: symmetric InfoNCE over the batch. With ``T = exp(logit_scale)`` (CLIP's learnable
  temperature, clamped to at most 100 as in CLIP) and unit-norm image/text vectors,
  ``logits = T * img @ txt.T`` and the loss is the mean of the image->text and text->image
  cross-entropies. Identical captions in one batch are all counted as positives: the target row
  is uniform over them, which reduces to the usual one-hot target when captions are unique.
  SigLIP checkpoints get their own pairwise sigmoid loss with the learnable bias instead.
* **Step**: backward (through the gradient scaler with fp16), gradient-norm clipping, optimiser
  and schedule step, then the temperature clamp.
"""

from __future__ import annotations

import contextlib
import math

import numpy as np

from .data import PairData
from .model import Optimisation
from .settings import FinetuneSettings

__all__ = ["contrastive_loss", "seeded", "train_epoch"]

_MAX_SCALE = math.log(100.0)


def contrastive_loss(img, txt, scale, same, bias=None):
    """Symmetric InfoNCE with identical captions as shared positives; sigmoid loss with a bias."""
    import torch.nn.functional as F

    logits = scale * img @ txt.t()
    if bias is not None:  # SigLIP: every pair is a binary match / no-match decision
        signs = same.float() * 2 - 1
        return -F.logsigmoid(signs * (logits + bias)).sum() / len(img)
    target = same.float()
    target = target / target.sum(1, keepdim=True)
    loss_i = -(target * F.log_softmax(logits, dim=1)).sum(1).mean()
    loss_t = -(target.t() * F.log_softmax(logits.t(), dim=1)).sum(1).mean()
    return (loss_i + loss_t) / 2


@contextlib.contextmanager
def seeded(seed: int, device: str):
    """Seed torch's global RNG (dropout) for the block only; restore the caller's state after."""
    import torch

    devices = [torch.cuda.current_device()] if device.startswith("cuda") else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def _batch_loss(enc, data: PairData, b, amp, sigmoid: bool):
    """The loss of the pairs ``b`` (gradients on)."""
    import torch

    model, dev = enc.model, enc.device
    px = data.pixels.get(b).to(dev)
    tok = {k: v[b].to(dev) for k, v in data.tokens.items()}
    same = (data.groups[b][:, None] == data.groups[b][None, :]).to(dev)
    with amp:
        im = enc.image_features(px)
        tx = enc.text_features(tok)
    im = torch.nn.functional.normalize(im.float(), dim=-1)
    tx = torch.nn.functional.normalize(tx.float(), dim=-1)
    bias = model.logit_bias.float() if sigmoid else None
    return contrastive_loss(im, tx, model.logit_scale.float().exp(), same, bias)


def _step(model, loss, opt: Optimisation, max_grad_norm: float, sigmoid: bool) -> None:
    """Backward, clip, optimiser and schedule step; keep CLIP's temperature at most 100."""
    import torch

    opt.optim.zero_grad(set_to_none=True)
    if opt.scaler is not None:
        opt.scaler.scale(loss).backward()
        opt.scaler.unscale_(opt.optim)
    else:
        loss.backward()
    if max_grad_norm:
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], max_grad_norm)
    if opt.scaler is not None:
        opt.scaler.step(opt.optim)
        opt.scaler.update()
    else:
        opt.optim.step()
    opt.sched.step()
    if not sigmoid:
        with torch.no_grad():
            model.logit_scale.clamp_(0, _MAX_SCALE)


def train_epoch(enc, data: PairData, opt: Optimisation, gen, cfg: FinetuneSettings, sigmoid: bool,
                advance) -> float:
    """One pass over the training pairs in an order drawn from ``gen``; the mean batch loss.

    Args:
        enc: The CLIP-family encoder being trained.
        data: The pairs.
        opt: Optimiser, schedule and precision set-up.
        gen: The ``torch.Generator`` of the batch order.
        cfg: The run's settings (``batch_size``, ``max_grad_norm``).
        sigmoid: SigLIP's sigmoid loss instead of InfoNCE.
        advance: Progress callback, called once per step with the step's loss.
    """
    import torch

    model, bs = enc.model, cfg.batch_size
    n_train = len(data.train_idx)
    model.train()
    order = torch.as_tensor(data.train_idx)[torch.randperm(n_train, generator=gen)]
    losses = []
    for s in range(opt.per_epoch):
        b = order[s * bs:(s + 1) * bs] if n_train >= bs else order
        loss = _batch_loss(enc, data, b, opt.amp, sigmoid)
        _step(model, loss, opt, cfg.max_grad_norm, sigmoid)
        losses.append(float(loss.detach()))
        advance(1, loss=losses[-1])
    return round(float(np.mean(losses)), 6)
