"""Hook specifications. A plugin implements any of them, marked with ``@cclgs_core.hookimpl``.

Each hook receives ``register(name, factory)``; call it once per component the plugin provides.
``factory`` is usually the component class; its keyword arguments (all with defaults) are the
options a run config may set. The interface each kind satisfies is in ``cclgs_core.interfaces``.
"""

from cclgs_core.plumbing.registry import hookspec


@hookspec
def cclgs_register_mask_generator(register):
    """Register mask generators (``interfaces.MaskGenerator``)."""


@hookspec
def cclgs_register_tracker(register):
    """Register trackers (``interfaces.Tracker``)."""


@hookspec
def cclgs_register_feature_extractor(register):
    """Register feature extractors (``interfaces.FeatureExtractor``)."""


@hookspec
def cclgs_register_compressor(register):
    """Register feature compressors (``interfaces.FeatureCompressor``)."""


@hookspec
def cclgs_register_field_backend(register):
    """Register field backends (``interfaces.FieldBackend``)."""
