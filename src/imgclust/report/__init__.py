"""Plots and the self-contained HTML report, drawn from a run directory's data."""

from __future__ import annotations

import os
from pathlib import Path

from .builder import build_report

__all__ = ["build_report", "write_run"]


def write_run(result, out: str | os.PathLike, plots: bool = True, report: bool = True) -> Path:
    """Write a :class:`~imgclust.rundir.ClusteringResult` as a complete run directory.

    The data files first (:meth:`~imgclust.rundir.ClusteringResult.save`), then ``plots/*.png``
    and ``report.html`` drawn from them.
    """
    from .plots import save_all_plots

    out = result.save(out)
    if plots:
        save_all_plots(result, Path(out) / "plots")
    if report:
        build_report(out)
    return Path(out)
