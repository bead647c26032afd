"""SAM2 components: "sam2-auto" two-level masks from the image predictor with a point grid."""

from cclgs_core import hookimpl
from cclgs_sam2.auto_masks import Sam2AutoMaskGenerator


@hookimpl
def cclgs_register_mask_generator(register):
    register("sam2-auto", Sam2AutoMaskGenerator)
