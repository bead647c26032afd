"""Gaussians from a nerfstudio splatfacto checkpoint, optionally mapped back to the data's world frame.

A run directory ``outputs/<name>/splatfacto/<timestamp>/`` holds ``config.yml``,
``dataparser_transforms.json`` and ``nerfstudio_models/step-XXXXXXXXX.ckpt``. The checkpoint
is a dict whose ``"pipeline"`` entry is the pipeline's state dict; nerfstudio 1.1.5 stores the
Gaussians under ``_model.gauss_params.<name>`` (older versions ``_model.<name>``; DDP adds
``module.``):

- ``means`` (N, 3); ``scales`` (N, 3) log; ``quats`` (N, 4) wxyz, not normalised;
  ``opacities`` (N, 1) logit
- ``features_dc`` (N, 3) and ``features_rest`` (N, K-1, 3). With SH degree > 0, features_dc is
  the degree-0 SH coefficient. With degree 0 (K = 1) splatfacto instead stores the logit of the
  RGB colour; it is converted to the equivalent SH coefficient here, as nerfstudio's exporter does.
- any other ``gauss_params`` entry with N rows becomes ``Gaussians.extras[name]``.

Splatfacto trains in nerfstudio's normalised frame: ``p_ns = s * (T @ [p; 1])`` with ``T``
(3x4) and ``s`` from ``dataparser_transforms.json``. There ``p`` is nerfstudio's "original
data" frame: the transforms.json frame, or, when transforms.json has an ``applied_transform``
(ns-process-data output from COLMAP), the frame before it, i.e. COLMAP's. ``frame="data"``
undoes ``T`` and ``s`` (means, quaternions, log scales and the SH coefficients, rotated
exactly). Passing the scene's ``transforms_json`` then re-applies its ``applied_transform``, so
the Gaussians land in the frame that ``load_scene`` returns for that transforms.json.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from cclgs_core.datasets.nerfstudio import read_json
from cclgs_core.errors import DataError, error_summary
from cclgs_core.scene.gaussians import Gaussians, evaluate_sh, rgb_to_sh_dc

_PARAMETERS = ("means", "scales", "quats", "opacities", "features_dc", "features_rest")
_STEP = re.compile(r"^step-(\d+)\.ckpt$")


def find_checkpoint(path: Path) -> Path:
    """The checkpoint to load: ``path`` itself, or the latest ``step-*.ckpt`` in a run folder or a
    ``nerfstudio_models`` folder."""
    path = Path(path)
    if path.is_file():
        return path
    folder = path / "nerfstudio_models" if (path / "nerfstudio_models").is_dir() else path
    steps = {int(match.group(1)): child for child in folder.glob("step-*.ckpt") if (match := _STEP.match(child.name))}
    if not steps:
        raise DataError(
            f"{path}: no nerfstudio checkpoint (nerfstudio_models/step-*.ckpt); pass the run folder or a .ckpt file"
        )
    return steps[max(steps)]


def load_pipeline_state(path: Path) -> dict[str, torch.Tensor]:
    """The pipeline state dict of a checkpoint, loaded without running arbitrary pickled code."""
    # Pickles name numpy._core.multiarray under numpy 2 and numpy.core.multiarray under numpy 1.
    major = int(np.__version__.split(".")[0])
    multiarray = importlib.import_module("numpy._core.multiarray" if major >= 2 else "numpy.core.multiarray")
    allowed = [multiarray.scalar, np.dtype]
    allowed += [getattr(np.dtypes, name) for name in dir(np.dtypes) if name.endswith("DType")]
    try:
        with torch.serialization.safe_globals(allowed):
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # pickle errors, truncated zip archives
        raise DataError(
            f"{path}: cannot load the checkpoint ({error_summary(error)}); it is corrupt "
            "or holds objects other than tensors and numbers (re-save it from nerfstudio)"
        ) from None
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("pipeline"), dict):
        raise DataError(f"{path}: not a nerfstudio checkpoint (no 'pipeline' state dict)")
    return checkpoint["pipeline"]


def _gauss_params(path: Path, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """name -> tensor of the model's Gaussian parameters, whatever the key prefix."""
    params = {}
    for key, value in state.items():
        parts = key.split(".")
        while parts and parts[0] in ("module", "_model"):
            parts = parts[1:]
        if parts[:1] == ["gauss_params"]:
            parts = parts[1:]
        if len(parts) == 1 and isinstance(value, torch.Tensor):
            params[parts[0]] = value
    missing = [name for name in _PARAMETERS if name not in params]
    if missing:
        raise DataError(
            f"{path}: pipeline state has no _model.gauss_params.{missing[0]}; not a splatfacto checkpoint "
            f"(missing {', '.join(missing)})"
        )
    return params


def load_splatfacto(
    path: Path, frame: Literal["nerfstudio", "data"] = "nerfstudio", transforms_json: Path | None = None
) -> Gaussians:
    """Gaussians of a splatfacto checkpoint (a .ckpt, a ``nerfstudio_models`` folder or a run folder).

    ``frame="nerfstudio"`` keeps splatfacto's normalised frame; ``"data"`` maps back using the
    run's ``dataparser_transforms.json`` (and ``transforms_json``'s ``applied_transform``), see
    the module docstring.
    """
    checkpoint = find_checkpoint(path)
    params = _gauss_params(checkpoint, load_pipeline_state(checkpoint))
    count = params["means"].shape[0]
    features_rest = params["features_rest"].float()  # (N, K-1, 3)
    features_dc = params["features_dc"].float()  # (N, 3)
    if features_rest.shape[1] == 0:  # SH degree 0: splatfacto stores logit(RGB)
        features_dc = rgb_to_sh_dc(torch.sigmoid(features_dc))
    extras = {
        name: value.float()
        for name, value in params.items()
        if name not in _PARAMETERS and value.ndim >= 1 and value.shape[0] == count
    }
    try:
        gaussians = Gaussians(
            means=params["means"].float(),
            quats=params["quats"].float(),
            log_scales=params["scales"].float(),
            opacity_logits=params["opacities"].float().reshape(-1),
            sh=torch.cat([features_dc[:, None, :], features_rest], dim=1),
            extras=extras,
        )
    except (ValueError, RuntimeError) as error:
        raise DataError(f"{checkpoint}: the Gaussian parameters have inconsistent shapes ({error})") from None
    if frame == "nerfstudio":
        return gaussians
    if frame != "data":
        raise ValueError(f"frame must be 'nerfstudio' or 'data', got {frame!r}")
    return to_data_frame(gaussians, checkpoint.parent.parent / "dataparser_transforms.json", transforms_json)


def to_data_frame(gaussians: Gaussians, dataparser_transforms: Path, transforms_json: Path | None = None) -> Gaussians:
    """Undo nerfstudio's dataparser transform (and re-apply ``transforms_json``'s applied_transform)."""
    content = read_json(Path(dataparser_transforms))
    try:
        transform = np.asarray(content["transform"], dtype=np.float64)
        scale = float(content["scale"])
    except (KeyError, TypeError, ValueError):
        raise DataError(f"{dataparser_transforms}: expected {{'transform': 3x4 matrix, 'scale': number}}") from None
    rotation, translation = _rigid(dataparser_transforms, "transform", transform)
    if not np.isfinite(scale) or scale <= 0:
        raise DataError(f"{dataparser_transforms}: scale must be positive, got {scale}")
    # p = R^T (p_ns / s - t)
    result = transform_gaussians(gaussians, rotation.T / scale, -rotation.T @ translation)
    if transforms_json is not None:
        meta = read_json(Path(transforms_json))
        if isinstance(meta, dict) and "applied_transform" in meta:
            applied_rotation, applied_translation = _rigid(
                transforms_json, "applied_transform", meta["applied_transform"]
            )
            result = transform_gaussians(result, applied_rotation, applied_translation)
    return result


def _rigid(path: Path, key: str, matrix: object) -> tuple[np.ndarray, np.ndarray]:
    """(3, 3) rotation and (3,) translation of a 3x4 / 4x4 rigid transform, or DataError."""
    array = np.asarray(matrix, dtype=np.float64)
    if array.shape not in ((3, 4), (4, 4)) or not np.all(np.isfinite(array)):
        raise DataError(f"{path}: {key} must be a finite 3x4 or 4x4 matrix")
    rotation = array[:3, :3]
    if not np.allclose(rotation.T @ rotation, np.eye(3), atol=1e-5) or np.linalg.det(rotation) < 0:
        raise DataError(f"{path}: {key} is not a rotation plus translation")
    return rotation, array[:3, 3]


def transform_gaussians(gaussians: Gaussians, linear: np.ndarray, translation: np.ndarray) -> Gaussians:
    """Gaussians under ``x -> linear @ x + translation`` where ``linear`` (3, 3) is a positive scale times a rotation.

    translation: (3,). Means, quaternions, log scales and SH coefficients change; extras do not.
    """
    linear = np.asarray(linear, dtype=np.float64)
    scale = float(np.cbrt(np.linalg.det(linear)))
    rotation = linear / scale
    if scale <= 0 or not np.allclose(rotation.T @ rotation, np.eye(3), atol=1e-6):
        raise ValueError("transform_gaussians needs a positive scale times a rotation")
    dtype, device = gaussians.means.dtype, gaussians.means.device
    linear_t = torch.as_tensor(linear, dtype=torch.float64)
    means = gaussians.means.double() @ linear_t.T.to(device) + torch.as_tensor(
        translation, dtype=torch.float64, device=device
    )
    quats = _quat_multiply(_rotation_to_quat(rotation).to(device), gaussians.quats.double())
    return Gaussians(
        means=means.to(dtype),
        quats=quats.to(gaussians.quats.dtype),
        log_scales=(gaussians.log_scales.double() + np.log(scale)).to(gaussians.log_scales.dtype),
        opacity_logits=gaussians.opacity_logits.clone(),
        sh=rotate_sh(gaussians.sh, rotation),
        extras={name: value.clone() for name, value in gaussians.extras.items()},
    )


def rotate_sh(sh: torch.Tensor, rotation: np.ndarray) -> torch.Tensor:
    """SH coefficients (N, K, 3) of the colour function ``d -> f(rotation^T d)`` where ``sh`` describes f.

    Each degree band l transforms by a (2l+1, 2l+1) matrix, fitted exactly (least squares on
    more directions than unknowns) with the same basis ``evaluate_sh`` uses.
    """
    count = sh.shape[1]
    degree = int(round(count**0.5)) - 1
    directions = _fibonacci_sphere(64)  # (64, 3)
    rotated = directions @ torch.as_tensor(rotation, dtype=torch.float64)  # rows are rotation^T d
    basis, basis_rotated = _sh_basis(directions, count), _sh_basis(rotated, count)  # (64, K)
    result = sh.clone()
    for band in range(1, degree + 1):
        block = slice(band * band, (band + 1) * (band + 1))
        # Y_l(R^T d) = Y_l(d) @ D  =>  new coefficients = D @ old
        solution = torch.linalg.lstsq(basis[:, block], basis_rotated[:, block]).solution  # (2l+1, 2l+1)
        result[:, block] = torch.einsum("jk,nkc->njc", solution.to(sh.device, sh.dtype), sh[:, block])
    return result


def _sh_basis(directions: torch.Tensor, count: int) -> torch.Tensor:
    """(M, K) real SH basis values at unit directions (M, 3), with the conventions of ``evaluate_sh``."""
    values = []
    for index in range(count):
        coefficients = torch.zeros(len(directions), count, 3, dtype=torch.float64)
        coefficients[:, index, 0] = 1.0
        values.append(evaluate_sh(coefficients, directions)[:, 0])
    return torch.stack(values, dim=1)


def _fibonacci_sphere(count: int) -> torch.Tensor:
    """(count, 3) float64 near-uniform unit directions."""
    index = torch.arange(count, dtype=torch.float64) + 0.5
    z = 1.0 - 2.0 * index / count
    azimuth = index * np.pi * (3.0 - np.sqrt(5.0))
    radius = torch.sqrt(1.0 - z * z)
    return torch.stack([radius * torch.cos(azimuth), radius * torch.sin(azimuth), z], dim=1)


def _rotation_to_quat(rotation: np.ndarray) -> torch.Tensor:
    """(4,) float64 unit wxyz quaternion of a (3, 3) rotation."""
    from scipy.spatial.transform import Rotation

    x, y, z, w = Rotation.from_matrix(rotation).as_quat()
    return torch.tensor([w, x, y, z], dtype=torch.float64)


def _quat_multiply(left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """Hamilton product of a (4,) and (N, 4) wxyz quaternions, (N, 4)."""
    w1, x1, y1, z1 = left
    w2, x2, y2, z2 = right.unbind(dim=-1)
    return torch.stack(
        [
            w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2,
            w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
            w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2,
            w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2,
        ],
        dim=-1,
    )
