"""Vocabularies and prompts for naming clusters with words.

* Built-in vocabularies (:data:`BUILTIN_VOCABS`, data files shipped in ``imgclust/data``), a
  text file with one name per line, or a list of names: :func:`load_vocab`.
* The ImageNet-1k class names of the classifier path: :func:`imagenet_classes`.
* Prompt ensembling for text towers: :data:`DEFAULT_TEMPLATES` and :func:`prompt_embeddings`.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import ImgclustError

__all__ = ["BUILTIN_VOCABS", "DEFAULT_TEMPLATES", "load_vocab", "imagenet_classes", "prompt_embeddings"]

# Prompt ensemble (a short subset in the spirit of CLIP's ImageNet prompts): cheap enough to
# embed 1,000 names on a CPU, varied enough to average out the wording.
DEFAULT_TEMPLATES: tuple[str, ...] = (
    "a photo of a {}.",
    "a close-up photo of a {}.",
    "a photo of the {}.",
    "a photo of a small {}.",
    "a photo of a large {}.",
    "a bright photo of a {}.",
    "a drawing of a {}.",
    "an image of a {}.",
)

# Built-in vocabularies: name -> data file shipped in imgclust/data.
BUILTIN_VOCABS: dict[str, str] = {
    "general": "general.txt",
    "imagenet": "imagenet_classes.txt",
    "cifar100": "cifar100.txt",
}

_TEXT_BATCH = 512


def _data_text(filename: str) -> str:
    return resources.files("imgclust").joinpath("data", filename).read_text(encoding="utf-8")


def _parse_names(text: str) -> list[str]:
    """One name per line; blank lines and ``#`` comments ignored; duplicates dropped in order."""
    out: list[str] = []
    seen: set[str] = set()
    for line in text.splitlines():
        name = line.strip()
        if not name or name.startswith("#"):
            continue
        key = name.lower()
        if key not in seen:
            seen.add(key)
            out.append(name)
    return out


def imagenet_classes() -> list[str]:
    """The 1,000 ImageNet-1k class names in class-index order (``imagenet_classes.txt``).

    Each name is the first WordNet lemma of the class's synset (the usual short list: 0
    "tench", 285 "Egyptian cat", 967 "espresso", 999 "toilet tissue"), except that a later
    lemma which only extends the first one replaces it ("tabby" -> "tabby cat", "mouse" stays,
    "notebook" -> "notebook computer"), so a name reads on its own. Two names occur twice, as in
    the synsets: "crane" (bird, machine) and "maillot".
    """
    names = [line.strip() for line in _data_text(BUILTIN_VOCABS["imagenet"]).splitlines() if line.strip()]
    if len(names) != 1000:  # pragma: no cover - a broken install
        raise ImgclustError(f"imagenet_classes.txt has {len(names)} names, expected 1000")
    return names


def load_vocab(vocab: str | os.PathLike | Sequence[str] = "general") -> list[str]:
    """Resolve a vocabulary to a list of names.

    Args:
        vocab: A built-in name (``general``, ``imagenet``, ``cifar100``), a text file with one
            name per line (``#`` comments allowed), or a list of names.

    Returns:
        The names, duplicates (case-insensitive) removed, in order.

    Raises:
        ImgclustError: Unknown name, missing file, or an empty vocabulary.
    """
    if isinstance(vocab, (str, os.PathLike)):
        key = str(vocab)
        if key.lower() in BUILTIN_VOCABS:
            names = _parse_names(_data_text(BUILTIN_VOCABS[key.lower()]))
        elif os.path.isfile(os.path.expanduser(key)):
            try:
                names = _parse_names(Path(os.path.expanduser(key)).read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError) as exc:
                raise ImgclustError(f"cannot read vocabulary {key}: {exc}") from exc
        else:
            raise ImgclustError(f"--vocab {key!r} is neither a file nor a built-in vocabulary "
                                f"({', '.join(BUILTIN_VOCABS)})")
    else:
        names = _parse_names("\n".join(str(v) for v in vocab))
    if not names:
        raise ImgclustError(f"vocabulary {vocab!r} has no names")
    return names


def prompt_embeddings(encoder, names: Sequence[str], templates: Sequence[str] | None = None) -> np.ndarray:
    """Prompt-ensembled text embeddings: (len(names), D), L2-normalised.

    Each name is put into every template (``{}`` is replaced by the name; a template without
    ``{}`` gets the name appended), the prompts are embedded and normalised, averaged per name
    and normalised again.
    """
    templates = list(templates or DEFAULT_TEMPLATES)
    prompts = [t.format(n) if "{}" in t else f"{t} {n}" for n in names for t in templates]
    chunks = [encoder.encode_text(prompts[i:i + _TEXT_BATCH]) for i in range(0, len(prompts), _TEXT_BATCH)]
    emb = np.concatenate(chunks).reshape(len(names), len(templates), -1).mean(1)
    return emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
