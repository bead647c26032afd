"""OpenCLIP mask and text encoder: DESIGN.md section 1 step 2 (``F_i = CLIP(I * M_i)``)."""

from cclgs_core import hookimpl
from cclgs_openclip.extractor import OpenClipExtractor

__all__ = ["OpenClipExtractor"]


@hookimpl
def cclgs_register_feature_extractor(register):
    register("openclip", OpenClipExtractor)
