"""EfficientNet-Lite0 mask encoder with its ImageNet weights, which ship in a package (no download)."""

from cclgs_core import hookimpl
from cclgs_efficientnet.extractor import EfficientNetExtractor

__all__ = ["EfficientNetExtractor"]


@hookimpl
def cclgs_register_feature_extractor(register):
    register("efficientnet", EfficientNetExtractor)
