"""The "classical" mask generator: scikit-image segmentation at two scales, no weights."""

from cclgs_core import hookimpl
from cclgs_classical.generator import ClassicalMaskGenerator


@hookimpl
def cclgs_register_mask_generator(register):
    register("classical", ClassicalMaskGenerator)
