"""The synthetic benchmark: a world generator with exact ground truth, a noisy mask generator
("synthetic") and a simulated vision-language model ("simulated"). All of it is a simulation;
see SIMULATION.md for what it models and its fixed settings."""

from cclgs_core import hookimpl
from cclgs_synthetic.masks import SyntheticMaskGenerator
from cclgs_synthetic.vlm import SimulatedFeatureExtractor


@hookimpl
def cclgs_register_mask_generator(register):
    register("synthetic", SyntheticMaskGenerator)


@hookimpl
def cclgs_register_feature_extractor(register):
    register("simulated", SimulatedFeatureExtractor)
