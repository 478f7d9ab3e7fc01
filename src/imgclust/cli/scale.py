"""``imgclust embed``: fill the embedding store from images, without clustering."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from ._common import EncoderOpt, app, friendly


@app.command()
@friendly
def embed(
    inputs: List[str] = typer.Argument(..., help="Image files, folders, globs, or a CSV/Parquet manifest."),
    encoder: str = EncoderOpt,
    labels: Optional[str] = typer.Option(None, "--labels", help="folder or manifest (recorded nowhere; accepted "
                                                                 "so the same INPUT spec works as for run)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or mps."),
    embed_batch: int = typer.Option(64, "--embed-batch", help="Images per encoder forward pass."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Embedding cache (default ~/.cache/imgclust)."),
    dtype: str = typer.Option("float32", "--dtype", help="float32 or float16 (half the disk) for the store shards."),
    engine: str = typer.Option("local", "--engine", help="local, or ray (Ray Data actors; pip install "
                                                         "'imgclust[ray]')."),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help="Ray cluster to join (default: start "
                                                                         "Ray on this machine)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
):
    """Embed images into the store only (no clustering), so a long job can run apart from clustering."""
    from ..pipeline.embed import embed_images
    from ..progress import console

    emb = embed_images(inputs, encoder=encoder, labels=labels, device=device, batch_size=embed_batch,
                       cache_dir=cache_dir, progress=not quiet, dtype=dtype, engine=engine,
                       ray_address=ray_address)
    emb.store.compact()
    console().print(f"embedded {emb.n_encoded} new, {emb.n_cached} cached, {len(emb.skipped)} skipped "
                    f"({emb.images_per_second:.1f} images/s); store: [bold]{emb.store.dir}[/] "
                    f"({len(emb.store)} vectors)")
