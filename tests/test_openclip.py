"""The OpenCLIP extractor: the real ViT-B-16 at random initialisation on a tiny image."""

from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
import pytest
import torch

from cclgs_core.errors import ConfigError, DataError, PluginError
from cclgs_core.helpers.masked_crops import mask_boxes, masked_square_crops
from cclgs_core.interfaces import FeatureExtractor
from cclgs_core.plumbing.registry import get_registry
from cclgs_core.types import Camera, Frame, SegmentMap
from cclgs_openclip import OpenClipExtractor

HEIGHT, WIDTH = 40, 56


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Small batches: extra threads only add contention on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def extractor() -> OpenClipExtractor:
    with pytest.warns(UserWarning, match="random weights"):
        return get_registry().create(
            "feature_extractor", "openclip", {"allow_random_weights": True, "device": "cpu", "batch_size": 4}
        )


def make_frame(image_path: Path) -> Frame:
    camera = Camera(np.eye(4), fx=50.0, fy=50.0, cx=WIDTH / 2, cy=HEIGHT / 2, width=WIDTH, height=HEIGHT)
    return Frame(index=0, name="frame_00000", image_path=image_path, camera=camera)


@pytest.fixture
def frame(tmp_path: Path) -> Frame:
    return make_frame(tmp_path / "frame_00000.png")


def three_masks() -> SegmentMap:
    """Masks 0-2 of different shapes, and mask 3 with no pixels. segments: (H, W)."""
    segments = np.full((HEIGHT, WIDTH), -1, dtype=np.int32)
    segments[4:14, 3:30] = 0  # a wide box
    rows, cols = np.mgrid[:HEIGHT, :WIDTH]
    segments[(rows - 26) ** 2 + (cols - 40) ** 2 < 90] = 1  # a disc
    segments[30:38, 4:10] = 2
    segments[32:34, 10:20] = 2  # an L shape: its box holds pixels of no mask
    return SegmentMap(segments=segments, num_masks=4)


def random_image(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(HEIGHT, WIDTH, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def reference(extractor) -> np.ndarray:
    """(4, 512) features of ``three_masks`` on ``random_image(0)``."""
    return extractor.encode_masks(random_image(0), three_masks(), make_frame(Path("unused.png")))


def test_mask_features_are_unit_rows_of_the_model_dim(extractor, reference):
    assert isinstance(extractor, FeatureExtractor)
    assert extractor.dim == 512
    assert extractor.canonical_phrases == ("object", "things", "stuff", "texture")
    assert reference.shape == (4, 512) and reference.dtype == np.float32
    assert np.allclose(np.linalg.norm(reference, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(reference[0], reference[1], atol=1e-4)


def test_an_empty_mask_gets_the_black_image_feature_and_no_masks_give_no_rows(extractor, reference, frame):
    segment_map = three_masks()
    boxes = mask_boxes(segment_map.segments, segment_map.num_masks)
    crops = masked_square_crops(random_image(), segment_map.segments, boxes, [3], (224, 224))
    assert torch.count_nonzero(crops) == 0
    whole_black_image = extractor.encode_masks(
        np.zeros((HEIGHT, WIDTH, 3), dtype=np.uint8), SegmentMap(np.zeros((HEIGHT, WIDTH), np.int32), 1), frame
    )
    assert np.allclose(reference[3], whole_black_image[0], atol=1e-5)
    nothing = extractor.encode_masks(random_image(), SegmentMap(np.full((HEIGHT, WIDTH), -1, np.int32), 0), frame)
    assert nothing.shape == (0, 512) and nothing.dtype == np.float32


def test_pixels_outside_a_mask_do_not_change_its_feature(extractor, reference, frame):
    segment_map = three_masks()
    outside_l = random_image(0)
    outside_l[segment_map.segments != 2] = random_image(1)[segment_map.segments != 2]
    after = extractor.encode_masks(outside_l, segment_map, frame)
    assert np.allclose(after[2], reference[2], atol=1e-6)
    assert not np.allclose(after[0], reference[0], atol=1e-4)  # the change was visible to other masks
    inside_l = random_image(0)
    inside_l[segment_map.segments == 2] = 255 - inside_l[segment_map.segments == 2]
    only_l = SegmentMap(np.where(segment_map.segments == 2, 0, -1).astype(np.int32), 1)
    assert not np.allclose(extractor.encode_masks(inside_l, only_l, frame)[0], reference[2], atol=1e-4)


def test_batching_does_not_change_features(extractor, reference, frame):
    extractor.batch_size = 3
    try:
        split = extractor.encode_masks(random_image(0), three_masks(), frame)  # batches of 3 and 1
    finally:
        extractor.batch_size = 4
    assert np.allclose(split, reference, atol=1e-5)


def test_crop_blacks_out_the_background_and_pads_to_a_centred_square():
    image = np.full((10, 12, 3), 255, dtype=np.uint8)
    segments = np.full((10, 12), -1, dtype=np.int32)
    segments[2:4, 1:9] = 0  # a 2 x 8 bar ...
    segments[4, 1] = 0  # ... with a foot: box rows 2-4, cols 1-8 (3 x 8)
    boxes = mask_boxes(segments, 1)
    assert boxes.tolist() == [[2, 1, 5, 9]]
    crop = masked_square_crops(image, segments, boxes, [0], (8, 8))[0]  # (3, 8, 8), padded 2 rows on top
    assert torch.all(crop[:, :2] == 0) and torch.all(crop[:, 5:] == 0)
    assert torch.allclose(crop[:, 2:4], torch.ones(3, 2, 8), atol=1e-5)
    assert torch.allclose(crop[:, 4, 0], torch.ones(3), atol=1e-5)  # the foot
    assert torch.all(crop[:, 4, 1:] == 0)  # white pixels of the box that lie outside the mask


def test_mask_boxes_match_a_per_mask_reference():
    segments = np.random.default_rng(0).integers(-1, 6, size=(30, 20)).astype(np.int32)
    segments[segments == 4] = -1  # mask 4 is empty
    boxes = mask_boxes(segments, 6)
    for mask_id in range(6):
        rows, cols = np.nonzero(segments == mask_id)
        expected = [rows.min(), cols.min(), rows.max() + 1, cols.max() + 1] if len(rows) else [0, 0, 0, 0]
        assert boxes[mask_id].tolist() == expected


def test_text_embeddings(extractor):
    embeddings = extractor.encode_texts(["a red mug", "ramen bowl", "object"])
    assert embeddings.shape == (3, 512) and embeddings.dtype == np.float32
    assert np.allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(embeddings[0], embeddings[1], atol=1e-4)
    assert extractor.encode_texts([]).shape == (0, 512)


def test_a_tag_that_cannot_be_downloaded_asks_for_a_local_checkpoint(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(PluginError, match=r"not in the local cache.*pass the file's path"):
        OpenClipExtractor(pretrained="laion2b_s34b_b88k", device="cpu").load()


def _hub_resolves() -> bool:
    try:
        socket.getaddrinfo("huggingface.co", 443)
    except OSError:
        return False
    return True


@pytest.mark.skipif(_hub_resolves(), reason="the model hub is reachable here; this checks the offline error")
def test_an_unreachable_hub_fails_at_once_with_one_clear_error(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with pytest.raises(PluginError, match=r"unreachable.*pretrained = "):
        OpenClipExtractor(pretrained="laion2b_s34b_b88k", device="cpu").load()


def test_bad_model_tag_and_path_errors(tmp_path):
    with pytest.raises(ConfigError, match="unknown model_name"):
        OpenClipExtractor(model_name="ViT-Q-99")
    with pytest.raises(ConfigError, match="neither a file nor a pretrained tag"):
        OpenClipExtractor(pretrained="no_such_tag", device="cpu").load()
    missing = tmp_path / "weights" / "open_clip_pytorch_model.bin"
    with pytest.raises(DataError, match="does not exist"):
        OpenClipExtractor(pretrained=str(missing), device="cpu").load()
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match=r"garbage\.pt could not be loaded"):
        OpenClipExtractor(pretrained=str(garbage), device="cpu").load()


def test_a_local_checkpoint_file_is_loaded(tmp_path):
    # A small architecture keeps the checkpoint written here small (ViT-S-32-alt, 256-d).
    with pytest.warns(UserWarning, match="random weights"):
        source = OpenClipExtractor(model_name="ViT-S-32-alt", allow_random_weights=True, device="cpu")
    source.load()
    checkpoint = tmp_path / "vit_s_32_alt.pt"
    torch.save(source._model.state_dict(), checkpoint)
    loaded = OpenClipExtractor(model_name="ViT-S-32-alt", pretrained=str(checkpoint), device="cpu")
    assert loaded.dim == 256
    texts = ["a red mug", "ramen bowl"]
    assert np.array_equal(loaded.encode_texts(texts), source.encode_texts(texts))
    checkpoint.unlink()  # pytest keeps the last runs' temporary folders


def test_random_weights_are_the_same_network_in_every_process():
    """``cclgs preprocess`` and ``cclgs query`` build the random network in different processes,
    with torch's global generator in different states: both must get the same network, and
    building it leaves the global generator where it was."""
    texts = ["a red mug", "ramen bowl"]
    embeddings = []
    for global_seed in (1, 2):
        torch.manual_seed(global_seed)
        with pytest.warns(UserWarning, match="random weights"):
            extractor = OpenClipExtractor(model_name="ViT-S-32-alt", allow_random_weights=True, device="cpu")
        extractor.load()
        after_build = torch.rand(1)
        torch.manual_seed(global_seed)
        assert torch.equal(after_build, torch.rand(1))  # the global generator was not advanced
        embeddings.append(extractor.encode_texts(texts))
    assert np.array_equal(embeddings[0], embeddings[1])
