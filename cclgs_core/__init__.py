"""cclgs core: what a plugin author needs, importable from ``cclgs_core`` itself.

The names below are the stable plugin API (CONTRIBUTING.md): the registration hook and
registry, the five component interfaces, the data types, the errors, the output checks the
pipeline applies, and the helpers the built-in plugins share. The contract suites are in
``cclgs_core.testing``. Everything else (``scene``, ``stages``, ``evaluation``, ``plumbing``,
``helpers``, ``datasets``) is the toolkit's own machinery, free to move between releases.

The core is grouped by role:

- ``types``, ``interfaces``, ``errors``, ``validation``: the plugin API itself;
- ``scene/``: cameras, Gaussians, .ply files, the reference renderer;
- ``datasets/``: scene loaders (nerfstudio, COLMAP, LERF-OVS, 3D-OVS, splatfacto);
- ``stages/``: the pipeline (masks, tracking, features, compression, field training, queries);
- ``evaluation/``: metrics, label maps, benchmark protocols, pictures;
- ``plumbing/``: plugin registry, run configs, stage cache;
- ``helpers/``: small shared pieces (devices, seeding, masks, masked crops, checkpoints);
- ``testing/``: the contract suites and tiny test scenes.
"""

from cclgs_core.errors import CclgsError, ConfigError, DataError, PluginError
from cclgs_core.helpers.checkpoints import load_weights_into, require_checkpoint
from cclgs_core.helpers.devices import check_device_name, resolve_device
from cclgs_core.helpers.masked_crops import encode_masked_crops, unit_rows
from cclgs_core.helpers.seeding import repeatable_initialisation
from cclgs_core.interfaces import KINDS, FeatureCompressor, FeatureExtractor, FieldBackend, MaskGenerator, Tracker
from cclgs_core.plumbing.registry import get_registry, hookimpl
from cclgs_core.types import LEVELS, UNLABELED, Camera, Frame, FrameMasks, RenderOutput, Scene, SegmentMap
from cclgs_core.validation import (
    check_embeddings,
    check_frame_masks,
    check_segment_map,
    check_targets,
    check_track_labels,
)

__version__ = "0.1.0"

__all__ = [
    # registration and lookup
    "hookimpl",
    "get_registry",
    # the component kinds and their interfaces
    "KINDS",
    "MaskGenerator",
    "Tracker",
    "FeatureExtractor",
    "FeatureCompressor",
    "FieldBackend",
    # data types
    "LEVELS",
    "UNLABELED",
    "Camera",
    "Frame",
    "Scene",
    "SegmentMap",
    "FrameMasks",
    "RenderOutput",
    # errors
    "CclgsError",
    "ConfigError",
    "DataError",
    "PluginError",
    # the checks the pipeline applies to every component's output
    "check_segment_map",
    "check_frame_masks",
    "check_track_labels",
    "check_embeddings",
    "check_targets",
    # shared helpers
    "resolve_device",
    "check_device_name",
    "repeatable_initialisation",
    "encode_masked_crops",
    "unit_rows",
    "require_checkpoint",
    "load_weights_into",
    "__version__",
]
