"""cclgs core: data types, interfaces, registry, config, stage cache and pipeline.

Plugins mark their hook implementations with ``cclgs_core.hookimpl``.
"""

from cclgs_core.plumbing.registry import hookimpl

__version__ = "0.1.0"
__all__ = ["hookimpl", "__version__"]
