"""Grad-CAM for embedding similarity: the heatmap computation behind ``imgclust explain``.

Grad-CAM (Selvaraju et al. 2017) with a similarity target instead of a class logit:

* target: cosine similarity between the image's pooled embedding and the cluster centroid in
  the ORIGINAL embedding space (the normalised mean of the members' rows of ``embeddings.npy``);
* CNN encoders (EfficientNet-Lite0): the hooked activations are the last convolutional block's
  feature map ``A`` (N, 1280, 7, 7); channel weights are the spatially averaged gradients of the
  target w.r.t. ``A``; the map is ``ReLU(sum_c w_c A_c)``, upsampled to the model input;
* ViT-style encoders (transformers ViT, DINO, DINOv2, CLIP, SigLIP): the same on the patch tokens
  entering the LAST transformer layer (that layer's attention is what mixes the patches into the
  CLS / pooled vector; the layer's own output patch tokens get no gradient from a CLS target).

The L2 norm of the embedding is held constant when differentiating (as in similarity Grad-CAM,
Stylianou et al. 2019): the target keeps its value, and for a pooled embedding the map becomes
the exact split of the similarity over image regions. The full gradient of a cosine removes the
component along the image's own embedding, which for prototypes (images already closest to the
centre) cancels most of the signal: on a synthetic image whose only structure is a bright square,
the full-gradient map peaked on the square for ~1 image in 8, the norm-held map for nearly all.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import ImgclustError

__all__ = ["gradcam", "overlay"]


def _hf_last_layer(model):
    """The last transformer layer of a (vision) model.

    The stack is the ``nn.ModuleList`` named ``layer``/``layers`` (ViT/DINOv2: ``encoder.layer`` in
    transformers 4, ``layers`` in 5; CLIP/SigLIP: ``vision_model.encoder.layers``); with a text
    tower too, the one under the vision model.
    """
    from torch import nn

    stacks = [(name, mod) for name, mod in model.named_modules()
              if isinstance(mod, nn.ModuleList) and name.split(".")[-1] in ("layer", "layers") and len(mod)]
    vision = [s for s in stacks if "vision" in s[0]]
    text = [s for s in stacks if "text" in s[0]]
    pick = vision or [s for s in stacks if s not in text]
    if not pick:
        raise ImgclustError(f"cannot find the transformer layers of {type(model).__name__} for Grad-CAM")
    return pick[0][1][-1]


def _target(feats, centroids):
    """Cosine similarity to each row's centroid with the embedding norm held constant."""
    e = feats / feats.norm(dim=1, keepdim=True).detach().clamp_min(1e-12)
    return (e * centroids).sum(1)


def _cnn_geometry(model, in_size: int) -> tuple[float, float]:
    """Where the last feature map's cells sit in the input: ``(stride, offset)`` in input pixels.

    Cell ``j``'s receptive-field centre is at ``stride * (j + 0.5) + offset``. A naive bilinear
    resize assumes ``offset = 0``, but a stride-``s`` conv with left padding ``l`` and kernel ``k``
    centres output ``j`` on input ``s*j - l + (k-1)/2``: TF-"SAME" padding (EfficientNet-Lite pads
    only right/bottom) shifts it by +1/2 input pixel per stride-2 layer, 15.5 px at stride 32,
    which is half a cell; PyTorch's symmetric padding shifts it by -1/2 instead.
    """
    from torch import nn

    stride, offset = 1.0, 0.0
    for m in model.modules():
        if not isinstance(m, nn.Conv2d):
            continue
        s, k, d = m.stride[1], m.kernel_size[1], m.dilation[1]
        pad = getattr(m, "static_padding", None)
        if isinstance(pad, nn.ZeroPad2d):
            left = pad.padding[0]
        elif isinstance(m.padding, str):
            left = ((k - 1) * d) // 2 if m.padding == "same" else 0
        else:
            left = m.padding[1]
        offset += ((k - 1) * d / 2 + 0.5 - left - s / 2) * stride
        stride *= s
    return stride, offset


def _upsample(cam, size: tuple[int, int], stride: float, offset: float):
    """Resize (N, h, w) cell maps to ``size`` pixels, cell j centred at ``stride*(j+0.5)+offset``."""
    import torch
    import torch.nn.functional as F

    n, h, w = cam.shape
    H, W = size

    def axis(npix, ncell):
        # Continuous cell coordinate of each output pixel centre, normalised for grid_sample.
        u = (torch.arange(npix, dtype=torch.float32) + 0.5 - offset) / stride
        return 2 * u / ncell - 1

    gy, gx = torch.meshgrid(axis(H, h), axis(W, w), indexing="ij")
    grid = torch.stack([gx, gy], -1)[None].expand(n, H, W, 2).to(cam.device)
    return F.grid_sample(cam[:, None].float(), grid, mode="bilinear", padding_mode="border",
                         align_corners=False)[:, 0]


def _cnn_cams(encoder, x, centroids):
    import torch

    with torch.no_grad():
        fmap = encoder.feature_map(x).float().contiguous()
    A = fmap.requires_grad_(True)  # the hooked activations: last conv block's output
    with torch.enable_grad():
        sim = _target(A.mean(dim=(2, 3)), centroids)
        (grad,) = torch.autograd.grad(sim.sum(), A)
    w = grad.mean(dim=(2, 3))
    cam = torch.relu((w[:, :, None, None] * A.detach()).sum(1))
    return cam, sim.detach()


def _vit_cams(encoder, x, centroids):
    import torch

    layer = _hf_last_layer(encoder.model)
    captured = {}

    def pre_hook(module, args, kwargs):
        # Swap the layer's input for a leaf we can differentiate against.
        if args:
            h = args[0].detach().requires_grad_(True)
            captured["h"] = h
            return (h, *args[1:]), kwargs
        h = kwargs["hidden_states"].detach().requires_grad_(True)
        captured["h"] = h
        return args, {**kwargs, "hidden_states": h}

    handle = layer.register_forward_pre_hook(pre_hook, with_kwargs=True)
    try:
        with torch.enable_grad():
            feats = encoder.image_features(x).float()
            sim = _target(feats, centroids)
            (grad,) = torch.autograd.grad(sim.sum(), captured["h"])
    finally:
        handle.remove()
    tokens = captured["h"].detach()
    n_tok = tokens.shape[1]
    side = int(np.floor(np.sqrt(n_tok)))
    n_special = n_tok - side * side  # CLS and register tokens come first; SigLIP has none
    if side < 1 or n_special < 0 or n_special > 8:
        raise ImgclustError(f"cannot lay {n_tok} tokens out as a square patch grid")
    T, G = tokens[:, n_special:], grad[:, n_special:]
    w = G.mean(dim=1)  # (N, D): channel weights averaged over patches
    cam = torch.relu((T * w[:, None, :]).sum(-1)).reshape(len(x), side, side)
    return cam, sim.detach()


_FLIPS = {"none": ((),), "h": ((), (3,)), "hv": ((), (3,), (2,), (2, 3))}


def gradcam(encoder, images: Sequence, centroids: np.ndarray, flips: str = "hv"
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Grad-CAM heatmaps of ``images`` for their similarity to ``centroids``.

    Args:
        encoder: An EfficientNet encoder (``feature_map``) or a transformers encoder
            (``model``, ``preprocess``, ``image_features``).
        images: RGB PIL images.
        centroids: (D,) one centroid for all images, or (N, D) one per image, in the encoder's
            embedding space (normalised here).
        flips: Average the maps of the image and its mirror images (``hv``: horizontal, vertical
            and both; ``h``; ``none``), each mapped back. ImageNet filters and one-sided padding
            are not mirror-symmetric, which pulls single-view maps towards one side (on a bright
            square, flip-averaged maps peak on the square for 95% of 40 random positions, the rest
            within 8 px: a quarter of a 32 px feature cell).

    Returns:
        ``(heatmaps, similarities, shown)``: heatmaps (N, H, W) in [0, 1] at model-input
        resolution, the cosine similarity of each image to its centroid, and the model's view of
        each image (N, H, W, 3) uint8 (after resizing / cropping, for overlays).
    """
    import torch

    if not len(images):
        return np.zeros((0, 0, 0), np.float32), np.zeros(0, np.float32), np.zeros((0, 0, 0, 3), np.uint8)
    if flips not in _FLIPS:
        raise ImgclustError(f"flips must be one of {', '.join(_FLIPS)} (got {flips!r})")
    x = encoder.preprocess(list(images))
    n = len(x)
    views = _FLIPS[flips]
    xv = torch.cat([x.flip(d) if d else x for d in views])
    cents = np.asarray(centroids, np.float32)
    cents = np.broadcast_to(cents if cents.ndim == 2 else cents[None], (n, cents.shape[-1]))
    cents = cents / np.maximum(np.linalg.norm(cents, axis=1, keepdims=True), 1e-12)
    c = torch.from_numpy(np.ascontiguousarray(np.tile(cents, (len(views), 1)))).to(x.device)
    if hasattr(encoder, "feature_map"):
        cam, sim = _cnn_cams(encoder, xv, c)
    elif hasattr(encoder, "image_features") and hasattr(encoder, "model"):
        cam, sim = _vit_cams(encoder, xv, c)
    else:
        raise ImgclustError(f"explain needs a CNN or ViT-style encoder; {getattr(encoder, 'name', encoder)} "
                            "has no feature map to explain (e.g. the raw-pixel encoder)")
    H, W = x.shape[-2:]
    if hasattr(encoder, "feature_map"):
        stride, offset = _cnn_geometry(encoder.model, W)
    else:  # ViT patches: a stride-p, unpadded patch embedding, no shift
        stride, offset = W / cam.shape[-1], 0.0
    up = _upsample(cam, (H, W), stride, offset)
    # Map each mirrored view back ((N,1,H,W) dims 2/3 are (N,H,W) dims 1/2) and average.
    acc = sum((up[k * n:(k + 1) * n].flip(tuple(a - 1 for a in d)) if d else up[:n])
              for k, d in enumerate(views)) / len(views)
    peak = acc.flatten(1).max(1).values.clamp_min(1e-12)
    heat = (acc / peak[:, None, None]).cpu().numpy().astype(np.float32)
    mean = torch.tensor(encoder.spec.mean, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(encoder.spec.std, dtype=torch.float32).view(1, 3, 1, 1)
    shown = ((x.detach().float().cpu() * std + mean).clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()
    return heat, sim[:n].cpu().numpy().astype(np.float32), np.ascontiguousarray(shown)


def overlay(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.5, cmap: str = "jet"):
    """The image with its heatmap blended on top, as a PIL image."""
    from matplotlib import colormaps
    from PIL import Image

    colors = (colormaps[cmap](np.clip(heatmap, 0, 1))[..., :3] * 255).astype(np.float32)
    # Weak regions stay close to the image; strong ones take the colour.
    a = (alpha * (0.25 + 0.75 * np.clip(heatmap, 0, 1)))[..., None]
    out = image.astype(np.float32) * (1 - a) + colors * a
    return Image.fromarray(np.clip(out, 0, 255).astype(np.uint8))
