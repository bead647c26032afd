"""OpenCLIP mask and text encoder: docs/design.md, "Mask features" (``F_i = CLIP(I * M_i)``)."""

from cclgs_core import hookimpl
from cclgs_openclip.extractor import OpenClipExtractor

__all__ = ["OpenClipExtractor"]


@hookimpl
def cclgs_register_feature_extractor(register):
    register("openclip", OpenClipExtractor)
