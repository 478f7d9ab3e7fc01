"""Starting or joining Ray, shared by the Ray engines of the embed stage and of k-means assignment.

Ray is optional (``pip install 'imgclust[ray]'``) and imported only here, on first use.
"""

from __future__ import annotations

import os

from .errors import require

__all__ = ["ray_init"]


def ray_init(address: str | None = None, num_cpus: int | None = None):
    """Connect to Ray (``address``) or start it on this machine; returns the ``ray`` module."""
    ray = require("ray", extra="ray")
    require("ray.data", extra="ray")  # binds ray.data on the module
    if not ray.is_initialized():
        kwargs = {} if address else {"num_cpus": num_cpus or os.cpu_count() or 1}
        ray.init(address=address, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True,
                 **kwargs)
    return ray
