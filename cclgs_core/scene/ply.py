"""Read and write Gaussians and sparse point clouds as ``.ply`` files (binary, little endian).

Gaussians use the layout of INRIA's 3DGS, gsplat and nerfstudio exports, one ``vertex``
element with float32 properties:

- ``x y z`` means; ``nx ny nz`` written as zeros and ignored when read
- ``f_dc_0..2`` the degree-0 SH coefficient per colour channel
- ``f_rest_i`` the higher SH coefficients channel-major: all of red's K-1 coefficients, then
  green's, then blue's, i.e. ``f_rest_{c * (K - 1) + k} = sh[:, 1 + k, c]``
- ``opacity`` logit; ``scale_0..2`` log standard deviations; ``rot_0..3`` quaternion w, x, y, z

Extra per-Gaussian properties (``Gaussians.extras``, float32) follow these standard ones:

- an (N,) extra ``name`` is the property ``name``;
- an (N, C) extra ``name`` is the properties ``name_0 .. name_{C-1}`` (also for C = 1).

So that this reads back unambiguously, an extra's name must be a valid identifier that does
not end in ``_<digits>`` and is not a standard property or prefix. When reading, every
non-standard property named ``<prefix>_<i>`` belongs to the (N, C) extra ``<prefix>`` (its
indices must be exactly 0..C-1); any other non-standard property is an (N,) extra.

Sparse points (COLMAP / nerfstudio ``sparse_pc.ply``): ``x y z`` float and
``red green blue`` uint8.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import torch

from cclgs_core.errors import DataError
from cclgs_core.plumbing.cache import atomic_write_bytes
from cclgs_core.scene.gaussians import Gaussians

_NORMALS = ("nx", "ny", "nz")
_STANDARD_PREFIXES = ("f_dc", "f_rest", "scale", "rot")
_STANDARD_NAMES = ("x", "y", "z", *_NORMALS, "opacity")
_INDEXED = re.compile(r"^(.+)_(\d+)$")
_IDENTIFIER = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


def _read_vertices(path: Path) -> np.ndarray:
    """The ``vertex`` element of a .ply as a structured array, or DataError."""
    from plyfile import PlyData

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such .ply file; check the path (or re-export the scene)")
    try:
        ply = PlyData.read(str(path))
        vertex = ply["vertex"]
        return np.asarray(vertex.data)
    except KeyError:
        raise DataError(f"{path}: the .ply file has no 'vertex' element; it is not a point or Gaussian file") from None
    except Exception as error:  # plyfile raises several types for malformed files
        raise DataError(
            f"{path}: cannot parse the .ply file ({error}); the file is corrupt or truncated, re-export it"
        ) from None


def _require(path: Path, vertices: np.ndarray, names: list[str], hint: str) -> None:
    missing = [name for name in names if name not in vertices.dtype.names]
    if missing:
        raise DataError(f"{path}: missing .ply properties {', '.join(missing)}; {hint}")


def _column_block(vertices: np.ndarray, names: list[str]) -> np.ndarray:
    """(N, len(names)) float32 columns of a structured array."""
    return np.stack([vertices[name].astype(np.float32) for name in names], axis=1)


def _indexed_names(prefix: str, count: int) -> list[str]:
    return [f"{prefix}_{index}" for index in range(count)]


def _check_extra_name(name: str) -> None:
    if not _IDENTIFIER.match(name) or _INDEXED.match(name):
        raise ValueError(f"extra property name {name!r} must be an identifier not ending in '_<digits>'")
    if name in _STANDARD_NAMES or name in _STANDARD_PREFIXES:
        raise ValueError(f"extra property name {name!r} collides with a standard 3DGS .ply property")


def write_gaussians(path: Path, gaussians: Gaussians) -> None:
    """Write ``gaussians`` (and its float32 extras, see the module docstring) as a 3DGS .ply."""
    from plyfile import PlyData, PlyElement

    count = len(gaussians)
    sh = gaussians.sh.detach().cpu().to(torch.float32).numpy()  # (N, K, 3)
    rest = sh[:, 1:, :].transpose(0, 2, 1).reshape(count, -1)  # (N, 3 * (K - 1)) channel-major
    columns: list[tuple[str, np.ndarray]] = []
    means = gaussians.means.detach().cpu().to(torch.float32).numpy()
    columns += [(axis, means[:, index]) for index, axis in enumerate("xyz")]
    columns += [(name, np.zeros(count, dtype=np.float32)) for name in _NORMALS]
    columns += [(f"f_dc_{channel}", sh[:, 0, channel]) for channel in range(3)]
    columns += [(f"f_rest_{index}", rest[:, index]) for index in range(rest.shape[1])]
    columns.append(("opacity", gaussians.opacity_logits.detach().cpu().to(torch.float32).numpy()))
    log_scales = gaussians.log_scales.detach().cpu().to(torch.float32).numpy()
    columns += [(f"scale_{index}", log_scales[:, index]) for index in range(3)]
    quats = gaussians.quats.detach().cpu().to(torch.float32).numpy()
    columns += [(f"rot_{index}", quats[:, index]) for index in range(4)]
    for name, values in gaussians.extras.items():
        _check_extra_name(name)
        if values.dtype != torch.float32:
            raise ValueError(
                f"extra property {name!r} is {values.dtype}; extras are written as float32, convert it first"
            )
        array = values.detach().cpu().numpy()
        if array.ndim == 1:
            columns.append((name, array))
        elif array.ndim == 2:
            columns += [(f"{name}_{index}", array[:, index]) for index in range(array.shape[1])]
        else:
            raise ValueError(
                f"extra property {name!r} has shape {tuple(array.shape)}; only (N,) and (N, C) are supported"
            )

    table = np.empty(count, dtype=[(name, "<f4") for name, _ in columns])
    for name, values in columns:
        table[name] = values
    ply = PlyData([PlyElement.describe(table, "vertex")], text=False, byte_order="<")
    buffer = io.BytesIO()
    ply.write(buffer)
    atomic_write_bytes(Path(path), buffer.getvalue())


def read_gaussians(path: Path) -> Gaussians:
    """Read a 3DGS .ply (layout in the module docstring) with its extra properties, as float32."""
    path = Path(path)
    vertices = _read_vertices(path)
    names = list(vertices.dtype.names)
    required = [
        "x",
        "y",
        "z",
        *_indexed_names("f_dc", 3),
        "opacity",
        *_indexed_names("scale", 3),
        *_indexed_names("rot", 4),
    ]
    _require(
        path, vertices, required, "expected a 3DGS Gaussian .ply (nerfstudio: export with ply_color_mode sh_coeffs)"
    )

    rest_names = sorted((name for name in names if name.startswith("f_rest_")), key=lambda name: int(name[7:]))
    rest_count = len(rest_names)
    if rest_names != _indexed_names("f_rest", rest_count) or rest_count not in (0, 9, 24, 45):
        raise DataError(
            f"{path}: has {rest_count} f_rest_* properties ({rest_names[:3]}...); 3DGS files have 0, 9, 24 or 45 "
            "numbered from f_rest_0; the file is not a standard 3DGS .ply"
        )
    count = len(vertices)
    dc = _column_block(vertices, _indexed_names("f_dc", 3))  # (N, 3)
    rest = _column_block(vertices, rest_names) if rest_count else np.zeros((count, 0), np.float32)
    rest = rest.reshape(count, 3, rest_count // 3).transpose(0, 2, 1)  # (N, K-1, 3)
    sh = np.concatenate([dc[:, None, :], rest], axis=1)  # (N, K, 3)

    standard = set(required) | set(rest_names) | set(_NORMALS)
    extras = _read_extras(path, vertices, [name for name in names if name not in standard])
    return Gaussians(
        means=torch.from_numpy(_column_block(vertices, ["x", "y", "z"])),
        quats=torch.from_numpy(_column_block(vertices, _indexed_names("rot", 4))),
        log_scales=torch.from_numpy(_column_block(vertices, _indexed_names("scale", 3))),
        opacity_logits=torch.from_numpy(vertices["opacity"].astype(np.float32)),
        sh=torch.from_numpy(np.ascontiguousarray(sh)),
        extras=extras,
    )


def _read_extras(path: Path, vertices: np.ndarray, names: list[str]) -> dict[str, torch.Tensor]:
    """Group non-standard properties into (N,) and (N, C) float32 extras (rule in the module docstring)."""
    groups: dict[str, list[int]] = {}
    scalars: list[str] = []
    for name in names:
        match = _INDEXED.match(name)
        if match:
            groups.setdefault(match.group(1), []).append(int(match.group(2)))
        else:
            scalars.append(name)
    extras: dict[str, torch.Tensor] = {}
    for name in scalars:
        extras[name] = torch.from_numpy(vertices[name].astype(np.float32))
    for prefix, indices in groups.items():
        if sorted(indices) != list(range(len(indices))):
            raise DataError(
                f"{path}: properties {prefix}_* have indices {sorted(indices)}; an extra property group must be "
                f"numbered {prefix}_0 .. {prefix}_{len(indices) - 1} without gaps"
            )
        if prefix in extras:
            raise DataError(
                f"{path}: property {prefix!r} and properties {prefix}_* both exist; the extras are ambiguous"
            )
        extras[prefix] = torch.from_numpy(
            np.ascontiguousarray(_column_block(vertices, _indexed_names(prefix, len(indices))))
        )
    return extras


def write_points(path: Path, xyz: np.ndarray, rgb: np.ndarray) -> None:
    """Write a sparse point cloud. xyz: (P, 3) float, rgb: (P, 3) uint8."""
    from plyfile import PlyData, PlyElement

    xyz = np.asarray(xyz)
    rgb = np.asarray(rgb)
    if xyz.ndim != 2 or xyz.shape[1] != 3 or rgb.shape != xyz.shape:
        raise ValueError(f"points must be (P, 3) xyz and (P, 3) rgb, got {xyz.shape} and {rgb.shape}")
    if rgb.dtype != np.uint8:
        raise ValueError(f"point colours must be uint8, got {rgb.dtype}")
    table = np.empty(
        len(xyz), dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")]
    )
    for index, axis in enumerate("xyz"):
        table[axis] = xyz[:, index]
    for index, channel in enumerate(("red", "green", "blue")):
        table[channel] = rgb[:, index]
    buffer = io.BytesIO()
    PlyData([PlyElement.describe(table, "vertex")], text=False, byte_order="<").write(buffer)
    atomic_write_bytes(Path(path), buffer.getvalue())


def read_points(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read a sparse point cloud: (P, 3) float32 positions and (P, 3) uint8 colours."""
    path = Path(path)
    vertices = _read_vertices(path)
    _require(
        path,
        vertices,
        ["x", "y", "z", "red", "green", "blue"],
        "expected a point cloud with positions and uint8 colours",
    )
    for channel in ("red", "green", "blue"):
        if vertices.dtype[channel] != np.uint8:
            raise DataError(f"{path}: property {channel} is {vertices.dtype[channel]}, expected uchar (uint8) colours")
    xyz = _column_block(vertices, ["x", "y", "z"])
    rgb = np.stack([vertices[channel] for channel in ("red", "green", "blue")], axis=1).astype(np.uint8)
    return xyz, rgb
