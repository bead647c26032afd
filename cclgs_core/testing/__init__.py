"""Contract test suites that every plugin, built-in or third-party, runs against itself.

Field backends: ``cclgs_core.testing.backends.FieldBackendContract``.
"""

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
}

__all__ = ["CONTRACTS", "CompressorContract", "FeatureExtractorContract", "MaskGeneratorContract", "TrackerContract"]
