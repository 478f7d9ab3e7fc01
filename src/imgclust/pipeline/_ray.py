"""The Ray Data engine of the embed stage (``--engine ray``).

The paths still to embed become a Ray dataset; ``map_batches`` runs them through a pool of
actors, each of which builds the encoder once and then reads, decodes (with imgclust's own
decoder, so the vectors are exactly the local engine's) and encodes batch after batch. The
driver streams the results into the same store as the local engine, flushing whole batches as
atomic parts, so everything after the store is unchanged. A worker that dies is restarted and
its batch retried (``max_restarts``/``max_task_retries``); if the whole job dies, the flushed
parts stay and a re-run embeds only what is missing.

Without an address Ray starts on this machine (``ray.init()``); ``address`` joins a cluster
(``ray://host:10001`` or ``auto``).
"""

from __future__ import annotations

import os

import numpy as np

from ..errors import require
from ..progress import progress_bar

__all__ = ["encode_missing_ray", "ray_init"]


class _EmbedActor:
    """One Ray actor: the encoder is built once, then every batch is decoded and encoded here."""

    def __init__(self, encoder, device: str, threads: int):
        import torch

        from ..encoders import create_encoder

        torch.set_num_threads(max(1, threads))
        # A name or spec is built here, once per actor; an encoder object arrives already built.
        self.encoder = encoder if hasattr(encoder, "encode_images") else create_encoder(encoder, device=device)

    def __call__(self, batch: dict) -> dict:
        from .sources import DecodeError, load_image

        imgs, hashes, errors = [], [], []
        for path, h in zip(batch["path"], batch["hash"]):
            try:
                imgs.append(load_image(str(path)))
                hashes.append(str(h))
            except DecodeError as exc:
                errors.append((str(h), exc.reason))
        vec = np.asarray(self.encoder.encode_images(imgs), np.float32) if imgs else None
        dim = vec.shape[1] if vec is not None else int(self.encoder.dim or 1)
        rows = np.zeros((len(hashes) + len(errors), dim), np.float32)
        if vec is not None:
            rows[:len(hashes)] = vec
        return {"hash": np.array(hashes + [h for h, _ in errors], dtype=object),
                "vector": rows, "error": np.array([""] * len(hashes) + [r for _, r in errors], dtype=object)}


def ray_init(address: str | None = None, num_cpus: int | None = None):
    """Connect to Ray (``address``) or start it on this machine; returns the ``ray`` module."""
    ray = require("ray", extra="ray")
    require("ray.data", extra="ray")  # binds ray.data on the module
    if not ray.is_initialized():
        kwargs = {} if address else {"num_cpus": num_cpus or os.cpu_count() or 1}
        ray.init(address=address, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True,
                 **kwargs)
    return ray


def encode_missing_ray(records, hashes, todo, encoder, flusher, vectors: dict, batch_size: int, progress: bool,
                       *, source=None, device: str = "cpu", address: str | None = None,
                       actors: int | None = None) -> tuple[dict[str, str], int]:
    """Embed the ``todo`` records on Ray actors; same contract as the local engine's loop.

    Args:
        records: All records (only ``todo`` rows are embedded).
        hashes: Content hash per record.
        todo: Indices to embed.
        encoder: The encoder (its dimension; sent to the actors when ``source`` is ``None``).
        flusher: Buffers rows into the store in whole batches.
        vectors: Filled with hash -> vector.
        batch_size: Images per actor call.
        progress: Show a progress bar.
        source: What each actor builds its encoder from (a registry name or spec); default the encoder.
        device: Device inside the actors.
        address: Ray cluster address (default: start Ray here).
        actors: Actor pool size (default: the cluster's CPUs).

    Returns:
        ``(bad hash -> reason, number encoded)``.
    """
    ray = ray_init(address)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    n_actors = actors or max(1, int(ray.cluster_resources().get("CPU", 1)))
    ds = ray.data.from_items([{"path": records[i].path, "hash": hashes[i]} for i in todo],
                             override_num_blocks=max(1, min(len(todo) // max(1, batch_size), 200)))
    out = ds.map_batches(_EmbedActor, fn_constructor_kwargs={"encoder": source if source is not None else encoder,
                                                             "device": device, "threads": 1},
                         batch_size=batch_size, batch_format="numpy", concurrency=n_actors, num_cpus=1,
                         max_restarts=-1, max_task_retries=-1)  # a dead actor is restarted, its batch retried
    bad: dict[str, str] = {}
    n_encoded = 0
    with progress_bar(len(todo), f"embedding on Ray ({n_actors} actors)", progress) as adv:
        try:
            for b in out.iter_batches(batch_size=None, batch_format="numpy"):
                ok = b["error"] == ""
                hs = [str(h) for h in b["hash"][ok]]
                for h, reason in zip(b["hash"][~ok], b["error"][~ok]):
                    bad[str(h)] = str(reason)
                if hs:
                    vecs = np.asarray(b["vector"][ok], np.float32)
                    vectors.update(zip(hs, vecs))
                    flusher.add(hs, vecs)
                    n_encoded += len(hs)
                adv(len(b["hash"]))
        finally:
            flusher.flush()
    return bad, n_encoded
