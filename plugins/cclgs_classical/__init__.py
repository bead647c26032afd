"""The "classical" mask generator: scikit-image segmentation at two scales, no weights."""

from cclgs_classical.generator import ClassicalMaskGenerator
from cclgs_core import hookimpl


@hookimpl
def cclgs_register_mask_generator(register):
    register("classical", ClassicalMaskGenerator)
