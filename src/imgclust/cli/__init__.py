"""The ``imgclust`` command line: parses, calls the API, prints. No logic of its own.

One module per command group, each a thin shell over the Python API: :mod:`.pipeline`
(run, cluster, report, encoders, demo), :mod:`.scale` (embed), :mod:`.explore` (neighbors,
assign, animate, explain, probe), :mod:`.curate` (duplicates, outliers), :mod:`.experiments`
(robustness, datasets prepare) and :mod:`.language` (name, search, finetune, compare).
"""

from __future__ import annotations

from importlib import import_module

from ._common import app

# Importing a group's module registers its commands; --help lists them in this order (data flow first).
for _group in ("pipeline", "scale", "explore", "curate", "experiments", "language"):
    import_module(f"{__name__}.{_group}")

__all__ = ["app", "main"]


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
