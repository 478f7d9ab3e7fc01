"""The model and its optimiser: the CLIP-family encoder, what trains, AdamW, schedule, precision.

* **What trains**: ``all`` layers; ``last:N`` - the last N transformer blocks of each tower plus
  the final layer norms, projections and temperature; or ``proj`` - only the projections (and
  temperature), i.e. a linear re-alignment of the two frozen towers.
* **Optimiser**: AdamW (no weight decay on biases, norms, embeddings and the temperature),
  linear warm-up then cosine decay.
* **Precision**: ``torch.autocast`` in bf16 (or fp16 with a gradient scaler) on CUDA only;
  CPU and MPS train in fp32.
"""

from __future__ import annotations

import contextlib
import math
import re
from dataclasses import dataclass
from typing import Any

from ...errors import ImgclustError
from .settings import FinetuneSettings, parse_train

__all__ = ["select_trainable", "load_clip", "Optimisation", "make_optimisation", "autocast"]

# Parameter-name fragments that are always trained with ``last:N`` (heads after the blocks).
_HEAD_PARTS = ("post_layernorm", "final_layer_norm", "visual_projection", "text_projection", "logit_scale",
               "logit_bias", ".head.")
# ... and the only ones trained with ``proj``.
_PROJ_PARTS = ("visual_projection", "text_projection", "logit_scale", "logit_bias", "text_model.head.")
_NO_DECAY = ("bias", "norm", "embedding", "logit_scale", "logit_bias", "class_embedding", "probe")
_LAYER_RE = re.compile(r"^(.*\.layers?)\.(\d+)\.")


def load_clip(encoder: str, device: str):
    """The :class:`~imgclust.encoders.hf.HFEncoder` named ``encoder``; it must be CLIP-family with text."""
    from ...encoders import create_encoder
    from ...encoders.hf import HFEncoder

    enc = create_encoder(encoder, device=device)
    if not isinstance(enc, HFEncoder) or not enc.has_text or not hasattr(enc.model, "logit_scale"):
        raise ImgclustError(f"encoder {enc.name!r} is not a CLIP-family model with a text tower; "
                            "use clip-vit-b-32 (or another CLIP/SigLIP encoder) or hf:<CLIP checkpoint dir>")
    return enc


def _last_n(names: list[str], n: int) -> set[str]:
    """The parameters of the last ``n`` blocks of every layer stack, plus the heads after them."""
    depth: dict[str, int] = {}
    for nm in names:
        m = _LAYER_RE.match(nm)
        if m:
            depth[m.group(1)] = max(depth.get(m.group(1), -1), int(m.group(2)))
    keep = set()
    for nm in names:
        m = _LAYER_RE.match(nm)
        if m and int(m.group(2)) > depth[m.group(1)] - n:
            keep.add(nm)
        elif any(p in nm for p in _HEAD_PARTS):
            keep.add(nm)
    return keep


def select_trainable(model, train: str = "all") -> list[str]:
    """Set ``requires_grad`` for ``all``, ``last:N`` or ``proj``; return the trainable names."""
    mode, n = parse_train(train)
    names = [name for name, _ in model.named_parameters()]
    if mode == "all":
        keep = set(names)
    elif mode == "proj":
        keep = {nm for nm in names if any(p in nm for p in _PROJ_PARTS)}
    else:
        keep = _last_n(names, n)
    if not keep:
        raise ImgclustError(f"--train {train}: no parameters of this model match")
    for name, param in model.named_parameters():
        param.requires_grad_(name in keep)
    return [nm for nm in names if nm in keep]


def autocast(device: str, precision: str):
    """``(context, dtype)``: bf16/fp16 autocast on CUDA, a no-op context and None elsewhere."""
    import torch

    if not device.startswith("cuda") or precision == "fp32":
        return contextlib.nullcontext(), None
    dtype = torch.bfloat16 if precision == "bf16" or (precision == "auto" and torch.cuda.is_bf16_supported()) \
        else torch.float16
    return torch.autocast("cuda", dtype=dtype), dtype


@dataclass
class Optimisation:
    """The optimiser and everything the loop needs to step it.

    Attributes:
        optim: AdamW over the trainable parameters (two groups: decayed, not decayed).
        sched: ``LambdaLR``: linear warm-up over ``n_warm`` steps, then cosine decay to 0.
        scaler: A ``GradScaler`` when autocasting to fp16, else None.
        amp: The autocast context of the training steps (a no-op off CUDA).
        amp_dtype: The autocast dtype, or None for fp32.
        per_epoch: Steps per epoch.
        total: Steps in all.
        n_warm: Warm-up steps.
    """

    optim: Any
    sched: Any
    scaler: Any
    amp: Any
    amp_dtype: Any
    per_epoch: int
    total: int
    n_warm: int


def _lr_factor(n_warm: int, total: int):
    def factor(step: int) -> float:
        if step < n_warm:
            return (step + 1) / (n_warm + 1)
        progress_ = (step - n_warm) / max(1, total - n_warm)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress_)))

    return factor


def make_optimisation(model, n_train: int, device: str, cfg: FinetuneSettings) -> Optimisation:
    """AdamW over the parameters that require grad, its schedule, and the precision set-up."""
    import torch

    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if any(s in name.lower() for s in _NO_DECAY) else decay).append(p)
    optim = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                               {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.98), eps=1e-6)
    per_epoch = max(1, n_train // cfg.batch_size)
    total = per_epoch * cfg.epochs
    n_warm = int(cfg.warmup if cfg.warmup >= 1 else round(cfg.warmup * total))
    n_warm = min(max(n_warm, 0), total - 1) if total > 1 else 0
    sched = torch.optim.lr_scheduler.LambdaLR(optim, _lr_factor(n_warm, total))
    amp, amp_dtype = autocast(device, cfg.precision)
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
    return Optimisation(optim=optim, sched=sched, scaler=scaler, amp=amp, amp_dtype=amp_dtype,
                        per_epoch=per_epoch, total=total, n_warm=n_warm)
