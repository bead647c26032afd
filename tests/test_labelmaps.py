import numpy as np
import pytest
from PIL import Image

from cclgs_core.errors import DataError
from cclgs_core.evaluation.labelmaps import MAX_LABEL, read_label_map, write_label_map


def test_round_trip_with_unlabeled_and_extremes(tmp_path):
    rng = np.random.default_rng(0)
    labels = rng.integers(-1, 300, (17, 23)).astype(np.int32)
    labels[0, 0], labels[0, 1] = -1, MAX_LABEL
    path = tmp_path / "class.png"
    write_label_map(path, labels)
    with Image.open(path) as image:
        assert image.mode == "I;16" and image.format == "PNG"
        assert np.asarray(image)[0, 0] == 0  # -1 is stored as 0
    loaded = read_label_map(path)
    assert loaded.dtype == np.int32
    np.testing.assert_array_equal(loaded, labels)


@pytest.mark.parametrize("value", [-2, MAX_LABEL + 1])
def test_out_of_range_values_are_refused(tmp_path, value):
    labels = np.zeros((4, 4), np.int64)
    labels[2, 2] = value
    with pytest.raises(ValueError, match="must lie in"):
        write_label_map(tmp_path / "bad.png", labels)
    assert not (tmp_path / "bad.png").exists()


def test_non_integer_maps_are_refused(tmp_path):
    with pytest.raises(ValueError, match="2D integer"):
        write_label_map(tmp_path / "x.png", np.zeros((3, 3), np.float32))


def test_read_errors_name_the_file(tmp_path):
    with pytest.raises(DataError, match=r"missing\.png"):
        read_label_map(tmp_path / "missing.png")
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG garbage")
    with pytest.raises(DataError, match=r"corrupt\.png"):
        read_label_map(corrupt)
    eight_bit = tmp_path / "eight_bit.png"
    Image.fromarray(np.zeros((3, 3), np.uint8)).save(eight_bit)
    with pytest.raises(DataError, match=r"eight_bit\.png.*16-bit"):
        read_label_map(eight_bit)
