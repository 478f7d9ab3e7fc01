"""Self-contained HTML report built from a run directory."""

from .builder import build_report

__all__ = ["build_report"]
