"""Errors a user can cause. The CLI prints these as one line and exits non-zero."""

from __future__ import annotations

__all__ = ["ImgclustError", "InputError", "MissingDependencyError", "require"]


class ImgclustError(Exception):
    """A problem with the user's input or environment (bad path, no images, k too large...)."""

    exit_code = 2


class InputError(ImgclustError, ValueError):
    """Data or a parameter an estimator cannot work with (too few images, k out of range).

    Also a ``ValueError``, so scikit-learn tooling that expects one (``check_estimator``,
    parameter searches) treats it as the invalid input it is.
    """


class MissingDependencyError(ImgclustError, ImportError):
    """An optional dependency is not installed; the message names the install command."""


def require(module: str, extra: str | None = None, package: str | None = None):
    """Import ``module`` lazily, or raise an error that names the ``pip install`` to run.

    Args:
        module: Module to import, e.g. ``"transformers"``.
        extra: imgclust extra that provides it, e.g. ``"hf"``.
        package: PyPI name when it differs from the module name.
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        hint = f"pip install 'imgclust[{extra}]'" if extra else f"pip install {package or module}"
        raise MissingDependencyError(f"{module} is required for this: {hint}") from exc
