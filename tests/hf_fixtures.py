"""Tiny randomly initialised transformers checkpoints, saved exactly like a user's local dir.

Each ``make_tiny_*`` writes ``config.json`` + ``model.safetensors`` + the image processor
config (+ an offline word-level tokenizer for the models with a text tower) with
``save_pretrained`` and returns the directory, so tests can load them through
``create_encoder("hf:" + str(path))`` without any network access.

The image processors are the PIL-backed classes when the installed transformers has them
(5.x), so saving and loading never needs torchvision.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

__all__ = [
    "CLIP_MEAN",
    "CLIP_STD",
    "DEFAULT_VOCAB",
    "image_processor_class",
    "make_tiny_clip",
    "make_tiny_dinov2",
    "make_tiny_siglip",
    "make_tiny_tokenizer",
    "make_tiny_vit",
]

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
_HALF = (0.5, 0.5, 0.5)
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)

# Enough words for captions such as "a photo of a red circle" or "two small blue squares".
DEFAULT_VOCAB: tuple[str, ...] = tuple(
    """a an the of photo picture image drawing painting sketch this that is are with and on in
    red green blue yellow orange purple pink brown black white gray grey cyan magenta
    circle circles square squares triangle triangles star stars rectangle rectangles
    ellipse line lines dot dots shape shapes cross heart
    small large big tiny dark light bright pale striped plain background object objects
    cat dog bird car plane ship truck horse deer frog flower tree person face digit number
    one two three four five six seven eight nine ten
    0 1 2 3 4 5 6 7 8 9 . ,""".split()
)


def image_processor_class(name: str):
    """The PIL-backed image processor class (transformers 5.x) or the classic one (4.x)."""
    import transformers

    return getattr(transformers, f"{name}Pil", None) or getattr(transformers, name)


def make_tiny_tokenizer(
    vocab: Iterable[str] | None = None,
    *,
    style: str = "clip",
    model_max_length: int = 32,
):
    """An offline word-level fast tokenizer built with the ``tokenizers`` library.

    Ids: pad 0, unk 1, the words, then the start token (CLIP only) and the end token last, so
    the end token has the highest id in every sequence (old CLIP configs pool at the argmax id).

    Args:
        vocab: Extra words on top of :data:`DEFAULT_VOCAB` (lower-cased, deduplicated).
        style: ``"clip"`` (``<|startoftext|> ... <|endoftext|>``) or ``"siglip"`` (``... </s>``).
        model_max_length: Longest sequence the tokenizer produces when truncating.

    Returns:
        A ``transformers.PreTrainedTokenizerFast``.
    """
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    if style == "clip":
        pad, unk, bos, eos = "[PAD]", "[UNK]", "<|startoftext|>", "<|endoftext|>"
    elif style == "siglip":
        pad, unk, bos, eos = "<pad>", "<unk>", None, "</s>"
    else:
        raise ValueError(f"unknown tokenizer style {style!r}")
    words: list[str] = []
    for word in list(DEFAULT_VOCAB) + [w.lower() for w in (vocab or [])]:
        if word not in words:
            words.append(word)
    specials_tail = [t for t in (bos, eos) if t]
    ids = {tok: i for i, tok in enumerate([pad, unk, *words, *specials_tail])}

    tok = Tokenizer(WordLevel(vocab=ids, unk_token=unk))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    if bos:
        template = f"{bos} $A {eos}"
        specials = [(bos, ids[bos]), (eos, ids[eos])]
    else:
        template = f"$A {eos}"
        specials = [(eos, ids[eos])]
    tok.post_processor = processors.TemplateProcessing(single=template, special_tokens=specials)
    kwargs = {"bos_token": bos} if bos else {}
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token=unk, pad_token=pad, eos_token=eos,
        model_max_length=model_max_length, **kwargs,
    )


def make_tiny_clip(path: str | Path, image_size: int = 32, vocab: Iterable[str] | None = None,
                   seed: int = 0) -> Path:
    """Save a tiny random CLIP (32-d towers, 2 layers, 2 heads, patch 8, projection 32).

    Args:
        path: Directory to write (created if needed).
        image_size: Input side of the vision tower and of the processor's crop.
        vocab: Extra tokenizer words on top of :data:`DEFAULT_VOCAB`.
        seed: Seed of the random initialisation.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    import torch
    from transformers import CLIPConfig, CLIPModel

    path = Path(path)
    max_len = 32
    tokenizer = make_tiny_tokenizer(vocab, style="clip", model_max_length=max_len)
    text = dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                num_attention_heads=2, max_position_embeddings=max_len, projection_dim=32,
                pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                # The text tower pools at the first eos position (any id but the legacy 2).
                eos_token_id=tokenizer.eos_token_id)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                  image_size=image_size, patch_size=8, projection_dim=32)
    config = CLIPConfig(text_config=text, vision_config=vision, projection_dim=32)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CLIPModel(config).eval()
    processor = image_processor_class("CLIPImageProcessor")(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size},
        image_mean=list(CLIP_MEAN), image_std=list(CLIP_STD),
    )
    _save(path, model, processor, tokenizer)
    return path


def make_tiny_siglip(path: str | Path, image_size: int = 32, vocab: Iterable[str] | None = None,
                     seed: int = 0) -> Path:
    """Save a tiny random SigLIP (32-d towers, 2 layers, 2 heads, patch 8, 16 text positions).

    Args:
        path: Directory to write (created if needed).
        image_size: Input side of the vision tower and of the processor's resize.
        vocab: Extra tokenizer words on top of :data:`DEFAULT_VOCAB`.
        seed: Seed of the random initialisation.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    import torch
    from transformers import SiglipConfig, SiglipModel

    path = Path(path)
    max_len = 16
    tokenizer = make_tiny_tokenizer(vocab, style="siglip", model_max_length=max_len)
    text = dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                num_attention_heads=2, max_position_embeddings=max_len,
                pad_token_id=tokenizer.pad_token_id, bos_token_id=None,
                eos_token_id=tokenizer.eos_token_id)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                  image_size=image_size, patch_size=8)
    config = SiglipConfig(text_config=text, vision_config=vision)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = SiglipModel(config).eval()
    processor = image_processor_class("SiglipImageProcessor")(
        size={"height": image_size, "width": image_size}, image_mean=list(_HALF), image_std=list(_HALF),
    )
    _save(path, model, processor, tokenizer)
    return path


def make_tiny_vit(path: str | Path, image_size: int = 32, seed: int = 0) -> Path:
    """Save a tiny random ``ViTModel`` (hidden 32, 2 layers, patch 8).

    Stands in for ``google/vit-base-patch16-224-in21k`` and ``facebook/dino-vitb16``, which are
    both ``ViTModel`` checkpoints with a ``ViTImageProcessor``.

    Args:
        path: Directory to write (created if needed).
        image_size: Input side of the model and of the processor's resize.
        seed: Seed of the random initialisation.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    import torch
    from transformers import ViTConfig, ViTModel

    path = Path(path)
    config = ViTConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                       image_size=image_size, patch_size=8)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ViTModel(config).eval()
    processor = image_processor_class("ViTImageProcessor")(
        size={"height": image_size, "width": image_size}, image_mean=list(_HALF), image_std=list(_HALF),
    )
    _save(path, model, processor)
    return path


def make_tiny_dinov2(path: str | Path, image_size: int = 28, seed: int = 0) -> Path:
    """Save a tiny random ``Dinov2Model`` (hidden 32, 2 layers, patch 7) + ``BitImageProcessor``.

    The processor resizes the short side to ``image_size + image_size // 7`` and centre-crops
    ``image_size``, like DINOv2's 256 -> 224 evaluation transform.

    Args:
        path: Directory to write (created if needed).
        image_size: Crop side fed to the model (a multiple of the patch size 7).
        seed: Seed of the random initialisation.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    import torch
    from transformers import Dinov2Config, Dinov2Model

    path = Path(path)
    config = Dinov2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, mlp_ratio=2,
                          image_size=image_size, patch_size=7)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Dinov2Model(config).eval()
    processor = image_processor_class("BitImageProcessor")(
        size={"shortest_edge": image_size + image_size // 7},
        crop_size={"height": image_size, "width": image_size}, do_center_crop=True,
        image_mean=list(_IMAGENET_MEAN), image_std=list(_IMAGENET_STD),
    )
    _save(path, model, processor)
    return path


def _save(path: Path, model, processor, tokenizer=None) -> None:
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    if tokenizer is not None:
        tokenizer.save_pretrained(path)
