"""Tiny scenes written to disk for the contract suites: posed images plus a small Gaussian blob."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from cclgs_core.scene.cameras import orbit_poses
from cclgs_core.scene.gaussians import Gaussians
from cclgs_core.types import Camera, Frame, Scene


def tiny_image(index: int, height: int = 40, width: int = 48) -> np.ndarray:
    """(H, W, 3) uint8: a soft gradient with three flat shapes that shift a little with ``index``."""
    ys, xs = np.mgrid[0:height, 0:width]
    image = np.stack([xs * 2 + 40, ys * 2 + 40, np.full_like(xs, 90)], axis=-1).astype(np.float64)
    shift = 2 * index
    image[5:20, 4 + shift : 20 + shift] = (220, 30, 30)
    disc = (ys - 26) ** 2 + (xs - 32 + shift) ** 2 < 8**2
    image[disc] = (30, 200, 60)
    image[28:36, 8:40] = (40, 40, 210)
    return image.clip(0, 255).astype(np.uint8)


def tiny_gaussians(count: int = 200, seed: int = 0) -> Gaussians:
    """``count`` small Gaussians in a unit ball around the origin, where the tiny scene's cameras look."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    directions = torch.randn(count, 3, generator=generator)
    means = directions / directions.norm(dim=1, keepdim=True) * torch.rand(count, 1, generator=generator) ** (1 / 3)
    return Gaussians(
        means=means,
        quats=torch.randn(count, 4, generator=generator),
        log_scales=torch.full((count, 3), -2.5) + 0.3 * torch.randn(count, 3, generator=generator),
        opacity_logits=torch.full((count,), 2.0),
        sh=torch.rand(count, 1, 3, generator=generator),
    )


def make_tiny_scene(directory: Path, frames: int = 3, height: int = 40, width: int = 48) -> Scene:
    """Write ``frames`` PNG images under ``directory/images``, a Gaussians ``.ply`` and a nerfstudio
    ``transforms.json`` naming both; return the posed Scene.

    The images are drawn, not rendered from the Gaussians: enough for interface contracts only."""
    from PIL import Image

    from cclgs_core.scene.ply import write_gaussians

    directory = Path(directory)
    (directory / "images").mkdir(parents=True, exist_ok=True)
    result = []
    for index, pose in enumerate(orbit_poses(frames, radius=3.0, height=1.0)):
        path = directory / "images" / f"frame_{index + 1:05d}.png"
        Image.fromarray(tiny_image(index, height, width)).save(path)
        camera = Camera(pose, fx=width * 1.1, fy=width * 1.1, cx=width / 2, cy=height / 2, width=width, height=height)
        result.append(Frame(index=index, name=path.stem, image_path=path, camera=camera))
    gaussians_path = directory / "gaussians.ply"
    write_gaussians(gaussians_path, tiny_gaussians())
    opengl = np.diag([1.0, -1.0, -1.0, 1.0])  # OpenCV -> OpenGL camera axes
    transforms = {
        "fl_x": width * 1.1,
        "fl_y": width * 1.1,
        "cx": width / 2,
        "cy": height / 2,
        "w": width,
        "h": height,
        "camera_model": "OPENCV",
        "gaussians_file_path": gaussians_path.name,
        "frames": [
            {
                "file_path": f"images/{f.image_path.name}",
                "transform_matrix": (f.camera.camera_to_world @ opengl).tolist(),
            }
            for f in result
        ],
    }
    (directory / "transforms.json").write_text(json.dumps(transforms, indent=1))
    return Scene(root=directory, frames=result, gaussians_path=gaussians_path)
