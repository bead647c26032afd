"""SAM2 components: the "sam2" video tracker and "sam2-auto" two-level masks from a point grid."""

from cclgs_core import hookimpl
from cclgs_sam2.auto_masks import Sam2AutoMaskGenerator
from cclgs_sam2.tracker import Sam2Tracker


@hookimpl
def cclgs_register_mask_generator(register):
    register("sam2-auto", Sam2AutoMaskGenerator)


@hookimpl
def cclgs_register_tracker(register):
    register("sam2", Sam2Tracker)
