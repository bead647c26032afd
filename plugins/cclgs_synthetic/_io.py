"""Private writers and readers used until ``cclgs_core.ply`` and ``cclgs_core.labelmaps`` land.

Both follow the shared conventions, so swapping them for the core modules changes no file:

- Gaussians: the standard 3DGS ``.ply`` (binary little-endian float32 ``vertex`` element with
  x, y, z, nx, ny, nz, f_dc_0..2, f_rest_* channel-major, opacity as logit, scale_0..2 as log,
  rot_0..3 as a wxyz quaternion).
- Sparse points: ``.ply`` with float32 x, y, z and uint8 red, green, blue.
- Label maps: 16-bit greyscale PNG holding value + 1, so -1 (no label) is stored as 0.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cclgs_core.errors import DataError

_LABEL_MAX = 65534


def write_gaussians_ply(path: Path, gaussians) -> None:
    """Write ``cclgs_core.gaussians.Gaussians`` (extras are not written) as a standard 3DGS .ply."""
    from plyfile import PlyData, PlyElement

    means = gaussians.means.detach().cpu().numpy().astype(np.float32)  # (N, 3)
    sh = gaussians.sh.detach().cpu().numpy().astype(np.float32)  # (N, K, 3)
    count, coefficients = sh.shape[0], sh.shape[1]
    rest = sh[:, 1:, :].transpose(0, 2, 1).reshape(count, 3 * (coefficients - 1))  # channel-major
    columns = {
        **{axis: means[:, i] for i, axis in enumerate("xyz")},
        **{f"n{axis}": np.zeros(count, np.float32) for axis in "xyz"},
        **{f"f_dc_{i}": sh[:, 0, i] for i in range(3)},
        **{f"f_rest_{i}": rest[:, i] for i in range(rest.shape[1])},
        "opacity": gaussians.opacity_logits.detach().cpu().numpy().astype(np.float32),
        **{f"scale_{i}": gaussians.log_scales.detach().cpu().numpy().astype(np.float32)[:, i] for i in range(3)},
        **{f"rot_{i}": gaussians.quats.detach().cpu().numpy().astype(np.float32)[:, i] for i in range(4)},
    }
    vertices = np.empty(count, dtype=[(name, "<f4") for name in columns])
    for name, values in columns.items():
        vertices[name] = values
    PlyData([PlyElement.describe(vertices, "vertex")], byte_order="<").write(str(path))


def write_points_ply(path: Path, points: np.ndarray, colors: np.ndarray) -> None:
    """points: (P, 3) float; colors: (P, 3) uint8 RGB."""
    from plyfile import PlyData, PlyElement

    vertices = np.empty(len(points), dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")])
    for i, axis in enumerate("xyz"):
        vertices[axis] = points[:, i]
    for i, channel in enumerate(("red", "green", "blue")):
        vertices[channel] = colors[:, i]
    PlyData([PlyElement.describe(vertices, "vertex")], byte_order="<").write(str(path))


def write_label_map(path: Path, labels: np.ndarray) -> None:
    """labels: (H, W) integers in [-1, 65534], -1 = none; stored as a 16-bit PNG of labels + 1."""
    from PIL import Image

    labels = np.asarray(labels)
    if labels.size and (labels.min() < -1 or labels.max() > _LABEL_MAX):
        raise ValueError(f"label values must lie in [-1, {_LABEL_MAX}], got [{labels.min()}, {labels.max()}]")
    Image.fromarray((labels.astype(np.int64) + 1).astype(np.uint16)).save(path)


def read_label_map(path: Path) -> np.ndarray:
    """(H, W) int32 labels from a 16-bit PNG written by ``write_label_map`` (0 in the file -> -1)."""
    from PIL import Image

    path = Path(path)
    if not path.is_file():
        raise DataError(f"label map {path} does not exist; regenerate the world with `cclgs synth`")
    with Image.open(path) as image:
        if image.mode not in ("I;16", "I;16B", "I;16L", "I"):
            raise DataError(f"label map {path} is a {image.mode} image, expected a 16-bit greyscale PNG of labels + 1")
        return np.asarray(image).astype(np.int32) - 1
