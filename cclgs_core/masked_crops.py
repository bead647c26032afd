"""The masked-crop recipe at its former address, for plugins written against the earlier layout.

Import ``encode_masked_crops`` and ``unit_rows`` from ``cclgs_core`` instead; the recipe lives in
``cclgs_core.helpers.masked_crops``.
"""

import warnings

from cclgs_core.helpers.masked_crops import encode_masked_crops, mask_boxes, masked_square_crops, unit_rows

warnings.warn(
    "cclgs_core.masked_crops moved: import encode_masked_crops and unit_rows from cclgs_core",
    DeprecationWarning,
    stacklevel=2,
)

__all__ = ["encode_masked_crops", "mask_boxes", "masked_square_crops", "unit_rows"]
