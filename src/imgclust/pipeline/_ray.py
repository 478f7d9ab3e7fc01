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
import sys

import numpy as np

from .._ray_session import ray_init
from ..progress import progress_bar

__all__ = ["actor_layout", "encode_missing_ray", "ray_init"]


class _EmbedActor:
    """One Ray actor: the encoder is built once, then every batch is decoded and encoded here.

    It is built as the driver's encoder was (same runtime, same cache root, so the ONNX export
    is read, not redone) with ``threads`` intra-op threads, and decodes with the local engine's
    decoder (JPEG draft at the encoder's size, then its one resize), so the vectors are the same.
    """

    def __init__(self, encoder, build: dict, threads: int):
        threads = max(1, int(threads))
        os.environ["IMGCLUST_THREADS"] = str(threads)  # read by the exported runtimes' sessions
        from ..encoders import create_encoder
        from ._decode import decoder

        # A name or spec is built here, once per actor; an encoder object arrives already built.
        self.encoder = encoder if hasattr(encoder, "encode_images") else create_encoder(encoder, **build)
        if "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(threads)
        self.decode = decoder(self.encoder)

    def __call__(self, batch: dict) -> dict:
        imgs, hashes, errors = [], [], []
        for path, h in zip(batch["path"], batch["hash"]):
            img, err = self.decode(_Path(str(path)))
            if img is None:
                errors.append((str(h), err))
            else:
                imgs.append(img)
                hashes.append(str(h))
        vec = np.asarray(self.encoder.encode_images(imgs), np.float32) if imgs else None
        dim = vec.shape[1] if vec is not None else int(self.encoder.dim or 1)
        rows = np.zeros((len(hashes) + len(errors), dim), np.float32)
        if vec is not None:
            rows[:len(hashes)] = vec
        return {"hash": np.array(hashes + [h for h, _ in errors], dtype=object),
                "vector": rows, "error": np.array([""] * len(hashes) + [r for _, r in errors], dtype=object)}


class _Path:
    """What the local decoder reads from a record: its path."""

    def __init__(self, path: str):
        self.path = path


def actor_layout(cpus: int, actors: int | None = None) -> tuple[int, int]:
    """``(actors, intra-op threads per actor)`` for ``cpus`` cores: one single-threaded actor per core by default.

    Two one-thread actors beat one two-thread actor on 2 cores: while one decodes (Python, PIL)
    the other runs the model, which the local engine gets from its decode threads.
    """
    n = max(1, actors or cpus)
    return n, max(1, cpus // n)


def encode_missing_ray(records, hashes, todo, encoder, flusher, vectors: dict, batch_size: int, progress: bool,
                       *, source=None, build: dict | None = None, address: str | None = None,
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
        build: Keyword arguments of :func:`~imgclust.encoders.create_encoder` in the actors
            (device, runtime, cache root); default the encoder's device.
        address: Ray cluster address (default: start Ray here).
        actors: Actor pool size (default: the cluster's CPUs, see :func:`actor_layout`;
            ``$IMGCLUST_RAY_ACTORS`` also sets it).

    Returns:
        ``(bad hash -> reason, number encoded)``.
    """
    ray = ray_init(address)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    env = os.environ.get("IMGCLUST_RAY_ACTORS", "")
    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    n_actors, threads = actor_layout(cpus, actors or (int(env) if env.isdigit() else None))
    build = build or {"device": getattr(encoder, "device", "cpu")}
    ds = ray.data.from_items([{"path": records[i].path, "hash": hashes[i]} for i in todo],
                             override_num_blocks=max(1, min(len(todo) // max(1, batch_size), 200)))
    out = ds.map_batches(_EmbedActor, fn_constructor_kwargs={"encoder": source if source is not None else encoder,
                                                             "build": build, "threads": threads},
                         batch_size=batch_size, batch_format="numpy", concurrency=n_actors, num_cpus=threads,
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
