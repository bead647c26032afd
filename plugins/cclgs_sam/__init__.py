"""The "sam" mask generator: segment-anything (SAM) with a point grid, two mask levels."""

from cclgs_core import hookimpl
from cclgs_sam.generator import SamMaskGenerator


@hookimpl
def cclgs_register_mask_generator(register):
    register("sam", SamMaskGenerator)
