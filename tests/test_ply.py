import numpy as np
import pytest
import torch
from plyfile import PlyData, PlyElement

from cclgs_core.errors import DataError
from cclgs_core.scene.gaussians import Gaussians
from cclgs_core.scene.ply import read_gaussians, read_points, write_gaussians, write_points


def random_gaussians(count: int, degree: int, seed: int = 0, extras: dict | None = None) -> Gaussians:
    generator = torch.Generator().manual_seed(seed)
    return Gaussians(
        means=torch.randn(count, 3, generator=generator),
        quats=torch.randn(count, 4, generator=generator),
        log_scales=torch.randn(count, 3, generator=generator) - 3.0,
        opacity_logits=torch.randn(count, generator=generator),
        sh=torch.randn(count, (degree + 1) ** 2, 3, generator=generator),
        extras=extras or {},
    )


def assert_same(first: Gaussians, second: Gaussians) -> None:
    for name in ("means", "quats", "log_scales", "opacity_logits", "sh"):
        assert torch.equal(getattr(first, name), getattr(second, name)), name
    assert first.extras.keys() == second.extras.keys()
    for name in first.extras:
        assert first.extras[name].shape == second.extras[name].shape, name
        assert torch.equal(first.extras[name], second.extras[name]), name


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_round_trip_is_exact(tmp_path, degree):
    gaussians = random_gaussians(50, degree, seed=degree)
    path = tmp_path / "scene.ply"
    write_gaussians(path, gaussians)
    loaded = read_gaussians(path)
    assert_same(gaussians, loaded)
    assert loaded.sh_degree == degree


def test_layout_matches_inria(tmp_path):
    gaussians = random_gaussians(7, 3)
    path = tmp_path / "scene.ply"
    write_gaussians(path, gaussians)
    ply = PlyData.read(str(path))
    vertex = ply["vertex"].data
    names = list(vertex.dtype.names)
    assert names[:9] == ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
    assert names[9:54] == [f"f_rest_{i}" for i in range(45)]
    assert names[54:] == ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    assert all(vertex.dtype[name] == np.float32 for name in names)
    assert not ply.text and ply.byte_order == "<"
    np.testing.assert_array_equal(vertex["nx"], 0.0)
    sh = gaussians.sh.numpy()
    # channel-major: all 15 red coefficients, then green, then blue
    for channel in range(3):
        for coefficient in range(15):
            np.testing.assert_array_equal(
                vertex[f"f_rest_{channel * 15 + coefficient}"], sh[:, 1 + coefficient, channel]
            )
    np.testing.assert_array_equal(vertex["rot_0"], gaussians.quats[:, 0].numpy())  # w first
    np.testing.assert_array_equal(vertex["opacity"], gaussians.opacity_logits.numpy())


def test_extras_survive_round_trip(tmp_path):
    count = 20
    extras = {
        "semantic": torch.randn(count, 8),
        "confidence": torch.rand(count),
        "single": torch.rand(count, 1),
        "feature_map": torch.randn(count, 3),
    }
    gaussians = random_gaussians(count, 1, extras=extras)
    path = tmp_path / "semantic.ply"
    write_gaussians(path, gaussians)
    names = PlyData.read(str(path))["vertex"].data.dtype.names
    assert [f"semantic_{i}" for i in range(8)] == [name for name in names if name.startswith("semantic_")]
    assert "confidence" in names and "single_0" in names and "feature_map_2" in names
    loaded = read_gaussians(path)
    assert_same(gaussians, loaded)
    assert loaded.extras["single"].shape == (count, 1)
    assert loaded.extras["confidence"].shape == (count,)


@pytest.mark.parametrize("name", ["semantic_0", "f_dc", "scale", "rot", "opacity", "x", "nx", "9lives", "has space"])
def test_ambiguous_extra_names_are_refused(tmp_path, name):
    gaussians = random_gaussians(3, 0, extras={name: torch.zeros(3)})
    with pytest.raises(ValueError, match="extra property name"):
        write_gaussians(tmp_path / "bad.ply", gaussians)


def test_non_float32_extras_and_3d_extras_are_refused(tmp_path):
    with pytest.raises(ValueError, match="float32"):
        write_gaussians(tmp_path / "a.ply", random_gaussians(3, 0, extras={"ids": torch.arange(3)}))
    with pytest.raises(ValueError, match="only \\(N,\\) and \\(N, C\\)"):
        write_gaussians(tmp_path / "b.ply", random_gaussians(3, 0, extras={"cube": torch.zeros(3, 2, 2)}))
    assert not (tmp_path / "a.ply").exists() and not (tmp_path / "b.ply").exists()


def write_table(path, columns: dict) -> None:
    table = np.empty(
        len(next(iter(columns.values()))), dtype=[(name, values.dtype.str) for name, values in columns.items()]
    )
    for name, values in columns.items():
        table[name] = values
    PlyData([PlyElement.describe(table, "vertex")]).write(str(path))


def standard_columns(count: int, rest: int = 0) -> dict:
    rng = np.random.default_rng(0)
    names = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1", "scale_2"]
    names += ["rot_0", "rot_1", "rot_2", "rot_3"] + [f"f_rest_{i}" for i in range(rest)]
    return {name: rng.standard_normal(count).astype(np.float32) for name in names}


def test_reads_foreign_property_order_and_unknown_properties(tmp_path):
    columns = standard_columns(5, rest=9)
    shuffled = dict(reversed(list(columns.items())))  # no normals, reversed order
    shuffled["red"] = np.arange(5, dtype=np.uint8)
    path = tmp_path / "foreign.ply"
    write_table(path, shuffled)
    loaded = read_gaussians(path)
    assert loaded.sh_degree == 1
    np.testing.assert_array_equal(loaded.sh[:, 2, 1].numpy(), columns["f_rest_4"])  # green, second coefficient
    np.testing.assert_array_equal(loaded.quats[:, 3].numpy(), columns["rot_3"])
    np.testing.assert_array_equal(loaded.extras["red"].numpy(), np.arange(5, dtype=np.float32))


def test_missing_property_names_file_and_property(tmp_path):
    columns = standard_columns(4)
    del columns["opacity"]
    path = tmp_path / "no_opacity.ply"
    write_table(path, columns)
    with pytest.raises(DataError, match=r"no_opacity\.ply.*opacity"):
        read_gaussians(path)


def test_rgb_only_ply_is_refused_with_a_hint(tmp_path):
    path = tmp_path / "rgb.ply"
    write_points(path, np.zeros((3, 3), np.float32), np.zeros((3, 3), np.uint8))
    with pytest.raises(DataError, match=r"rgb\.ply.*f_dc_0.*sh_coeffs"):
        read_gaussians(path)


def test_wrong_f_rest_count_and_gaps(tmp_path):
    path = tmp_path / "rest.ply"
    write_table(path, standard_columns(4, rest=5))
    with pytest.raises(DataError, match=r"rest\.ply.*5 f_rest"):
        read_gaussians(path)
    columns = standard_columns(4)
    columns["feat_0"] = columns["x"].copy()
    columns["feat_2"] = columns["x"].copy()
    write_table(path, columns)
    with pytest.raises(DataError, match=r"rest\.ply.*feat_"):
        read_gaussians(path)


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(DataError, match=r"absent\.ply"):
        read_gaussians(tmp_path / "absent.ply")
    garbage = tmp_path / "garbage.ply"
    garbage.write_bytes(b"not a ply file at all")
    with pytest.raises(DataError, match=r"garbage\.ply.*corrupt"):
        read_gaussians(garbage)
    good = tmp_path / "good.ply"
    write_gaussians(good, random_gaussians(100, 3))
    truncated = tmp_path / "truncated.ply"
    truncated.write_bytes(good.read_bytes()[:-500])
    with pytest.raises(DataError, match=r"truncated\.ply"):
        read_gaussians(truncated)
    other = tmp_path / "faces_only.ply"
    PlyData([PlyElement.describe(np.zeros(2, dtype=[("a", "f4")]), "face")]).write(str(other))
    with pytest.raises(DataError, match=r"faces_only\.ply.*vertex"):
        read_gaussians(other)


def test_points_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    xyz = rng.standard_normal((30, 3)).astype(np.float32)
    rgb = rng.integers(0, 256, (30, 3)).astype(np.uint8)
    path = tmp_path / "sparse_pc.ply"
    write_points(path, xyz, rgb)
    loaded_xyz, loaded_rgb = read_points(path)
    assert loaded_xyz.dtype == np.float32 and loaded_rgb.dtype == np.uint8
    np.testing.assert_array_equal(loaded_xyz, xyz)
    np.testing.assert_array_equal(loaded_rgb, rgb)


def test_points_without_colours_are_refused(tmp_path):
    path = tmp_path / "bare.ply"
    write_table(path, {axis: np.zeros(3, np.float32) for axis in "xyz"})
    with pytest.raises(DataError, match=r"bare\.ply.*red"):
        read_points(path)
    float_colours = tmp_path / "float_colours.ply"
    write_table(float_colours, {name: np.zeros(3, np.float32) for name in ("x", "y", "z", "red", "green", "blue")})
    with pytest.raises(DataError, match=r"float_colours\.ply.*uint8"):
        read_points(float_colours)
