"""The EfficientNet-Lite0 extractor with its real ImageNet weights, on real photos (scikit-image's)."""

from __future__ import annotations

import socket

import numpy as np
import pytest
import torch
from skimage import data

from cclgs_core.errors import DataError, PluginError
from cclgs_core.types import Camera, Frame, SegmentMap
from cclgs_efficientnet import EfficientNetExtractor

#: Two crops (y0, x0, y1, x1) of one object in each photo: the cat's face and body, two sides of the cup.
CROPS = {
    "cat": (data.chelsea(), [(20, 100, 200, 300), (100, 0, 300, 451)]),
    "cup": (data.coffee(), [(50, 0, 400, 350), (0, 200, 300, 600)]),
}


@pytest.fixture(scope="module")
def extractor() -> EfficientNetExtractor:
    return EfficientNetExtractor(device="cpu")


def box_embedding(extractor, image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """(1280,) embedding of one box-shaped mask of ``image``."""
    segments = np.full(image.shape[:2], -1, np.int32)
    y0, x0, y1, x1 = box
    segments[y0:y1, x0:x1] = 0
    height, width = image.shape[:2]
    camera = Camera(np.eye(4), fx=50.0, fy=50.0, cx=width / 2, cy=height / 2, width=width, height=height)
    frame = Frame(index=0, name="photo", image_path="photo.png", camera=camera)
    return extractor.encode_masks(image, SegmentMap(segments, 1), frame)[0]


def similarities(extractor) -> tuple[list[float], list[float]]:
    """Cosines between the two crops of one object, and between crops of different objects."""
    embeddings = {
        name: [box_embedding(extractor, image, box) for box in boxes] for name, (image, boxes) in CROPS.items()
    }
    same = [float(first @ second) for first, second in embeddings.values()]
    different = [float(cat @ cup) for cat in embeddings["cat"] for cup in embeddings["cup"]]
    return same, different


def test_crops_of_one_object_agree_more_than_crops_of_two(extractor):
    same, different = similarities(extractor)
    assert min(same) > max(different) + 0.3, (same, different)  # measured: 0.70, 0.84 against at most 0.20

    # The same network at random initialisation does not tell the objects apart: the weights do the work.
    untrained = EfficientNetExtractor(device="cpu")
    untrained.load()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        for module in untrained._model.modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
    same, different = similarities(untrained)
    assert min(same) < max(different) + 0.05, (same, different)  # measured: all about 0.99


def test_the_weights_are_imagenets(extractor):
    extractor.load()
    image = torch.from_numpy(data.chelsea()).permute(2, 0, 1)[None].float() / 255.0
    image = torch.nn.functional.interpolate(image, size=(224, 224), mode="bilinear", antialias=True)
    with torch.no_grad():
        logits = extractor._model(image * 2.0 - 1.0)  # (1, 1000) ImageNet classes
    assert int(logits.argmax()) in (281, 282, 285)  # tabby, tiger cat, Egyptian cat


def test_loads_and_encodes_without_a_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("network access in a test that must run offline")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    offline = EfficientNetExtractor(device="cpu")
    embedding = box_embedding(offline, data.coffee(), (50, 0, 400, 350))
    assert embedding.shape == (1280,) and abs(float(np.linalg.norm(embedding)) - 1.0) < 1e-5


def test_text_queries_are_refused_with_the_way_out(extractor, tmp_path):
    with pytest.raises(PluginError, match=r"has no text encoder.*by example \(.cclgs query RUN --exemplar-view"):
        extractor.encode_texts(["a cat"])
    garbage = tmp_path / "weights.pth"
    garbage.write_bytes(b"not weights")
    with pytest.raises(DataError, match="could not be loaded as EfficientNet-Lite0 weights"):
        EfficientNetExtractor(weights=garbage, device="cpu").load()
