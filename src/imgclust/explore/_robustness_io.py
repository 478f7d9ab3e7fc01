"""Write a robustness experiment: the clean run directory plus its table, JSON, line plots and report."""

from __future__ import annotations

from pathlib import Path

from .._io import atomic_write_json, atomic_write_table

__all__ = ["write_robustness"]


def write_robustness(result, out, plots: bool = True, report: bool = True) -> Path:
    """``out/`` = the clean run, ``robustness.parquet``/``.csv``/``.json``, ``plots/robustness.png``, report."""

    from ..report import build_report, write_run
    from ..report.experiments import robustness_figure
    from ..rundir import write_run_json

    out = Path(out)
    clean = result.clean
    write_run(clean, out, plots=plots, report=False)
    table = result.table()
    atomic_write_table(out / "robustness.parquet", table, csv=True)
    atomic_write_json(out / "robustness.json", {"config": result.config, "rows": result.rows,
                                                "timings": result.timings})
    if plots:
        robustness_figure(result.rows, out / "plots" / "robustness.png",
                          title=f"Robustness of {result.config['encoder']} + {result.config['method']} "
                                f"(k={result.config['k']}, {result.config['n_images']} images)")
    write_run_json(out, clean.config, {**clean.timings, "robustness": result.timings.get("total")}, clean.sweep,
                   robustness={"corruptions": result.config["corruptions"],
                               "severities": result.config["severities"]})
    if report:
        build_report(out)
    return out
