"""Images -> vectors.

Find and decode images (:mod:`.sources`), cache vectors by content hash
(:mod:`.store`) and run the encoder over what is not cached (:mod:`.embed`).
"""

from __future__ import annotations

from .embed import EmbedResult, embed_images, embed_records
from .sources import DecodeError, ImageRecord, discover, load_image
from .store import EmbeddingStore, default_cache_dir

__all__ = ["DecodeError", "EmbedResult", "EmbeddingStore", "ImageRecord", "default_cache_dir", "discover",
           "embed_images", "embed_records", "load_image"]
