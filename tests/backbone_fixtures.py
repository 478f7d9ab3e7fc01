"""Tiny random ConvNeXt, ResNet, ViT-MAE and ViT-MSN checkpoints, saved like the hub ones.

Each ``make_tiny_*`` builds the native transformers class from a small config, saves it with
``save_pretrained`` together with the image processor the real checkpoint ships with
(ConvNeXt and ResNet-50: ``ConvNextImageProcessor`` with crop_pct 0.875; MAE and MSN:
``ViTImageProcessor``, ImageNet mean/std), and returns the directory, so tests load them through
imgclust's ``hf:DIR`` / registered-spec path with no network.
"""

from __future__ import annotations

from pathlib import Path

from hf_fixtures import image_processor_class

__all__ = ["BACKBONE_MAKERS", "make_tiny_convnext", "make_tiny_resnet", "make_tiny_vit_mae", "make_tiny_vit_msn",
           "IMAGENET_MEAN", "IMAGENET_STD"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _build(cls, config, seed: int):
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return cls(config).eval()


def _save(path: Path, model, processor) -> Path:
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


def _convnext_processor(image_size: int):
    # As facebook/convnext-base-224 and microsoft/resnet-50: resize shortest edge to size / crop_pct, centre crop.
    return image_processor_class("ConvNextImageProcessor")(
        size={"shortest_edge": image_size}, crop_pct=0.875, image_mean=list(IMAGENET_MEAN),
        image_std=list(IMAGENET_STD))


def _vit_processor(image_size: int):
    return image_processor_class("ViTImageProcessor")(
        size={"height": image_size, "width": image_size}, image_mean=list(IMAGENET_MEAN),
        image_std=list(IMAGENET_STD))


def make_tiny_convnext(path, image_size: int = 32, seed: int = 0) -> Path:
    """``ConvNextModel`` with 2 stages (8, 16 channels); its pooler output is 16-d."""
    from transformers import ConvNextConfig, ConvNextModel

    cfg = ConvNextConfig(num_stages=2, hidden_sizes=[8, 16], depths=[1, 1], image_size=image_size)
    return _save(path, _build(ConvNextModel, cfg, seed), _convnext_processor(image_size))


def make_tiny_resnet(path, image_size: int = 32, seed: int = 0) -> Path:
    """``ResNetModel`` with 2 bottleneck stages (16, 32 channels); its pooled output is (N, 32, 1, 1)."""
    from transformers import ResNetConfig, ResNetModel

    cfg = ResNetConfig(embedding_size=8, hidden_sizes=[16, 32], depths=[1, 1], layer_type="bottleneck")
    return _save(path, _build(ResNetModel, cfg, seed), _convnext_processor(image_size))


def _vit_kw(image_size: int) -> dict:
    return dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                image_size=image_size, patch_size=8)


def make_tiny_vit_mae(path, image_size: int = 32, seed: int = 0) -> Path:
    """``ViTMAEModel`` saved with the pre-training mask ratio 0.75, as facebook/vit-mae-base is."""
    from transformers import ViTMAEConfig, ViTMAEModel

    cfg = ViTMAEConfig(**_vit_kw(image_size), mask_ratio=0.75, decoder_hidden_size=32, decoder_num_hidden_layers=1,
                       decoder_num_attention_heads=2, decoder_intermediate_size=64)
    return _save(path, _build(ViTMAEModel, cfg, seed), _vit_processor(image_size))


def make_tiny_vit_msn(path, image_size: int = 32, seed: int = 0) -> Path:
    """``ViTMSNModel`` (no pooler; the CLS token is the representation)."""
    from transformers import ViTMSNConfig, ViTMSNModel

    return _save(path, _build(ViTMSNModel, ViTMSNConfig(**_vit_kw(image_size)), seed), _vit_processor(image_size))


BACKBONE_MAKERS = {"convnext-b": make_tiny_convnext, "resnet-50": make_tiny_resnet, "vit-mae-b": make_tiny_vit_mae,
                   "vit-msn-b": make_tiny_vit_msn}
