"""The ``imgclust`` command line: parses, calls the API, prints. No logic of its own.

One module per command group, each a thin shell over the Python API: :mod:`.pipeline`
(run, cluster, report, encoders, demo), :mod:`.scale` (embed), :mod:`.explore` (neighbors, assign, animate,
explain, probe), :mod:`.curate` (duplicates, outliers) and :mod:`.language` (name, search,
finetune, compare).
"""

from __future__ import annotations

from . import curate, experiments, explore, language, pipeline, scale  # noqa: F401 - registers the commands
from ._common import app

__all__ = ["app", "main"]


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
