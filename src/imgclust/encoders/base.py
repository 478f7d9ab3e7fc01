"""Encoder specs and the base class every backend implements."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Sequence

import numpy as np
from PIL import Image

__all__ = ["EncoderSpec", "Encoder", "resolve_device", "l2_normalize", "pil_to_tensor", "resize_square", "to_device"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class EncoderSpec:
    """Everything that defines an encoder's output, frozen so it can be fingerprinted.

    Attributes:
        name: Registry name (``efficientnet-lite0``, ``clip-vit-b-32``, ``hf:/path``).
        family: Backend family: ``cnn``, ``pixels``, ``clip``, ``siglip``, ``vit``, ``dino``,
            ``dinov2`` or ``hf``.
        weights: Weights id (hub id, local dir or package file).
        image_size: Square input side in pixels (0 when the model's processor decides).
        mean: Per-channel normalisation mean.
        std: Per-channel normalisation std.
        pooling: How the image vector is formed (``avg``, ``cls``, ``projection``, ``flatten``).
        dim: Embedding dimension (0 when only known after loading).
        has_text: Whether the model has a text tower (``encode_text``).
        resample: PIL resampling filter used when resizing.
        description: One line for ``imgclust encoders``.
    """

    name: str
    family: str
    weights: str
    image_size: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    pooling: str = "avg"
    dim: int = 0
    has_text: bool = False
    resample: str = "bicubic"
    description: str = ""
    extra: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    def fingerprint(self) -> str:
        """A short stable id of weights + preprocessing: the embedding store's key."""
        payload = asdict(self)
        payload.pop("description", None)
        blob = json.dumps(payload, sort_keys=True, default=str).encode()
        return f"{_safe(self.name)}-{hashlib.sha256(blob).hexdigest()[:12]}"


def _safe(name: str) -> str:
    out = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    return out[-48:].strip("_") or "encoder"


def resolve_device(device: str = "auto") -> str:
    """Map ``auto`` to ``cuda`` or ``mps`` when present, else ``cpu``; validate the rest."""
    import torch

    from ..errors import ImgclustError

    device = (device or "auto").lower()
    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return "mps"
        return "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ImgclustError(f"--device {device}: CUDA is not available on this machine (use auto or cpu)")
    if device == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ImgclustError("--device mps: MPS is not available on this machine (use auto or cpu)")
    if device not in {"cpu", "mps"} and not device.startswith("cuda"):
        raise ImgclustError(f"unknown device {device!r}: use auto, cpu, cuda or mps")
    return device


def to_device(tensor, device: str):
    """Move a CPU batch to ``device``; to CUDA through pinned memory, asynchronously.

    Pinned (page-locked) host memory lets the copy run by DMA while the GPU still works on
    the previous batch; on CPU and MPS this is a plain ``.to``.
    """
    if str(device).startswith("cuda"):
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Row-wise L2 normalisation in float32; zero rows stay zero."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


_RESAMPLE = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR, "nearest": Image.NEAREST}


def resize_square(img: Image.Image, size: int, resample: str = "bicubic") -> Image.Image:
    """``img`` squashed to ``size`` x ``size`` in one resize (no-op when it already is)."""
    if img.size == (size, size):
        return img
    return img.resize((size, size), _RESAMPLE[resample])


def pil_to_tensor(images: Sequence[Image.Image], size: int, mean, std, resample: str = "bicubic",
                  crop: bool = False):
    """Resize RGB images to ``size``x``size`` and normalise: a float32 NCHW tensor.

    With ``crop`` the short side is resized to ``size`` and the centre is cropped (the usual
    ImageNet evaluation transform); without it the whole image is squashed to a square, which
    keeps every pixel of small images such as CIFAR's.
    """
    import torch

    arrs = []
    for img in images:
        if crop:
            w, h = img.size
            scale = size / min(w, h)
            img = img.resize((max(size, round(w * scale)), max(size, round(h * scale))), _RESAMPLE[resample])
            w, h = img.size
            left, top = (w - size) // 2, (h - size) // 2
            img = img.crop((left, top, left + size, top + size))
        else:
            img = resize_square(img, size, resample)
        arrs.append(np.asarray(img, dtype=np.float32))
    batch = np.stack(arrs) / 255.0
    batch = (batch - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return torch.from_numpy(np.ascontiguousarray(batch.transpose(0, 3, 1, 2)))


class Encoder:
    """Base class: ``encode_images(list of RGB PIL images) -> float32 (N, D)``, L2-normalised.

    Subclasses own their preprocessing, so the model and its transform always match. The
    model is loaded in ``__init__`` (weights missing -> :class:`ImgclustError`).
    """

    spec: EncoderSpec
    device: str = "cpu"
    runtime: str = "torch"

    @property
    def name(self) -> str:
        """Registry name of the encoder."""
        return self.spec.name

    @property
    def dim(self) -> int:
        """Embedding dimension (0 until known)."""
        return self.spec.dim

    @property
    def has_text(self) -> bool:
        """Whether :meth:`encode_text` works (a text tower sharing the image space)."""
        return self.spec.has_text

    def fingerprint(self) -> str:
        """The embedding store's key: weights + preprocessing (see :meth:`EncoderSpec.fingerprint`)."""
        return self.spec.fingerprint()

    @property
    def decode_size(self) -> int | None:
        """Smallest side the decoder may shrink a JPEG to (draft mode) without changing the input; ``None`` = full."""
        return self.spec.image_size or None

    def prepare(self, img: Image.Image) -> Image.Image:
        """Per-image preprocessing that may run in a decode worker (default: none)."""
        return img

    @property
    def default_batch_size(self) -> int:
        """Images per forward pass when the caller does not say: larger on a GPU to keep it busy."""
        return 256 if str(self.device).startswith("cuda") else 64

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:  # pragma: no cover
        """RGB PIL images -> L2-normalised float32 (N, D)."""
        raise NotImplementedError

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        """Texts -> L2-normalised float32 (N, D) in the image space; only encoders with a text tower."""
        from ..errors import ImgclustError

        raise ImgclustError(f"encoder {self.name!r} has no text tower; use a CLIP or SigLIP encoder")
