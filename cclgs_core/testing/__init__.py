"""Contract test suites that every plugin, built-in or third-party, runs against itself."""

from cclgs_core.testing.backends import FieldBackendContract
from cclgs_core.testing.contracts import (
    CompressorContract,
    FeatureExtractorContract,
    MaskGeneratorContract,
    TrackerContract,
)

#: Contract class per component kind.
CONTRACTS = {
    "mask_generator": MaskGeneratorContract,
    "tracker": TrackerContract,
    "feature_extractor": FeatureExtractorContract,
    "compressor": CompressorContract,
    "field_backend": FieldBackendContract,
}

__all__ = [
    "CONTRACTS",
    "CompressorContract",
    "FeatureExtractorContract",
    "FieldBackendContract",
    "MaskGeneratorContract",
    "TrackerContract",
]
