"""Data types exchanged between the stages and the plugins.

Shape legend (used in every docstring and comment of the project):

- ``H, W``   image height and width in pixels
- ``M``      number of masks of one image at one level
- ``D``      embedding dimension of the feature extractor (512 for ViT-B-16)
- ``N``      number of Gaussians
- ``C``      channels of a rendered per-Gaussian feature
- ``K``      spherical-harmonics coefficients per colour channel, ``(degree + 1) ** 2``
- ``P``      number of pixels in a batch
- ``T``      number of text queries
- ``L``      compressor output size (prototype count for codebooks, latent size for the autoencoder)

Cameras use the OpenCV convention (x right, y down, z forward); ``camera_to_world`` maps
camera coordinates to world coordinates. Readers convert from other conventions.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

import numpy as np

if TYPE_CHECKING:
    import torch  # imported lazily by the users of RenderOutput

    from cclgs_core.scene.undistort import LensDistortion

#: The colour (uint8 RGB) that transparent pixels of an image show: white.
BACKGROUND_RGB: tuple[int, int, int] = (255, 255, 255)

#: The two mask levels of CCL-LGS: ``sp`` = subpart + part, ``wp`` = whole + part.
LEVELS: tuple[str, ...] = ("sp", "wp")

#: Label of a mask that no track claimed, and of a pixel covered by no mask.
UNLABELED = -1


@dataclass(frozen=True)
class Camera:
    """A pinhole camera with its pose.

    camera_to_world: (4, 4) float64, OpenCV convention.
    """

    camera_to_world: np.ndarray
    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    def __post_init__(self) -> None:
        matrix = np.asarray(self.camera_to_world, dtype=np.float64)
        if matrix.shape != (4, 4):
            raise ValueError(f"camera_to_world must be (4, 4), got {matrix.shape}")
        object.__setattr__(self, "camera_to_world", matrix)

    @property
    def world_to_camera(self) -> np.ndarray:
        """(4, 4) float64 view matrix."""
        return np.linalg.inv(self.camera_to_world)

    @property
    def intrinsics(self) -> np.ndarray:
        """(3, 3) float64 matrix K."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]], dtype=np.float64)

    @property
    def center(self) -> np.ndarray:
        """(3,) float64 camera position in world coordinates."""
        return self.camera_to_world[:3, 3].copy()

    def scaled(self, factor: float) -> "Camera":
        """The same camera at ``factor`` times the resolution (0.5 halves width and height), sizes rounded."""
        return self.resized(int(round(self.width * factor)), int(round(self.height * factor)))

    def resized(self, width: int, height: int) -> "Camera":
        """The same camera with images of ``width`` x ``height`` pixels (intrinsics scaled per axis)."""
        return replace(
            self,
            fx=self.fx * width / self.width,
            fy=self.fy * height / self.height,
            cx=self.cx * width / self.width,
            cy=self.cy * height / self.height,
            width=width,
            height=height,
        )


@dataclass(frozen=True)
class Frame:
    """One posed image of a scene.

    ``ground_truth`` maps a name ("class", "instance", "part", "depth") to a file holding an
    (H, W) map; only synthetic scenes and benchmarks carry it. ``distortion``: the photo at
    ``image_path`` has lens distortion and is undistorted on load; ``camera`` is then the
    undistorted pinhole camera (``cclgs_core.scene.undistort``).
    """

    index: int
    name: str
    image_path: Path
    camera: Camera
    split: str = "train"
    ground_truth: Mapping[str, Path] = field(default_factory=dict)
    distortion: LensDistortion | None = None

    def load_image(self) -> np.ndarray:
        """(H, W, 3) uint8 RGB at the camera's resolution; DataError naming the file when it cannot be decoded.

        Images with transparency (RGBA, grey + alpha, palette with a transparent colour) are
        composited over white (``BACKGROUND_RGB``), the rule of nerfstudio's Blender parser and of
        the NeRF-synthetic scenes.
        """
        from PIL import Image

        from cclgs_core.errors import DataError

        try:
            with Image.open(self.image_path) as image:
                if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
                    rgba = image.convert("RGBA")
                    background = Image.new("RGBA", rgba.size, (*BACKGROUND_RGB, 255))
                    image = Image.alpha_composite(background, rgba)
                image = image.convert("RGB")
                if self.distortion is not None:
                    from cclgs_core.scene.undistort import undistort_image

                    image = Image.fromarray(undistort_image(np.asarray(image), self.distortion))
                size = (self.camera.width, self.camera.height)
                if image.size != size:
                    image = image.resize(size, Image.Resampling.BILINEAR)
                return np.asarray(image, dtype=np.uint8).copy()
        except (OSError, SyntaxError) as error:  # PIL's errors for unreadable, truncated or corrupt image data
            raise DataError(
                f"{self.image_path}: cannot read the image of frame {self.name} ({error}); "
                "replace the file with an intact copy, or remove the frame from the scene"
            ) from None


@dataclass
class Scene:
    """Posed images plus, optionally, the Gaussians and sparse points that describe them."""

    root: Path
    frames: list[Frame]
    gaussians_path: Path | None = None
    points_path: Path | None = None
    #: Class names with ground truth (synthetic worlds and benchmarks), else empty.
    class_names: tuple[str, ...] = ()
    #: (2, 3) float64 corners (min, max) of a box the scene's format says holds the scene, in
    #: world units (instant-ngp's ``aabb_scale``), else None.
    bounds: np.ndarray | None = None

    def split(self, name: str) -> list[Frame]:
        """The frames of one split ("train" or "test")."""
        return [frame for frame in self.frames if frame.split == name]


@dataclass
class SegmentMap:
    """Non-overlapping masks of one image at one level.

    segments: (H, W) int32, mask id per pixel in [0, M), ``UNLABELED`` (-1) where no mask.
    scores:   (M,) float32 quality of each mask (predicted IoU x stability for SAM), or None.
    """

    segments: np.ndarray
    num_masks: int
    scores: np.ndarray | None = None

    def mask(self, mask_id: int) -> np.ndarray:
        """(H, W) bool pixels of one mask."""
        return self.segments == mask_id

    def areas(self) -> np.ndarray:
        """(M,) int64 pixel count of each mask."""
        covered = self.segments[self.segments >= 0]
        return np.bincount(covered.ravel(), minlength=self.num_masks).astype(np.int64)


@dataclass
class FrameMasks:
    """The two mask levels of one image (see ``LEVELS``)."""

    sp: SegmentMap
    wp: SegmentMap

    def level(self, name: str) -> SegmentMap:
        if name not in LEVELS:
            raise KeyError(f"unknown mask level {name!r}; levels are {LEVELS}")
        return getattr(self, name)


@dataclass
class RenderOutput:
    """What a field backend renders for one camera.

    features: (H, W, C) float32 alpha-blended per-Gaussian features (no background added).
    alpha:    (H, W) float32 accumulated opacity in [0, 1].
    depth:    (H, W) float32 expected depth along the optical axis, normalised by alpha
              (0 where alpha is 0).
    extras:   optional backend-specific tensors; empty unless the backend documents them.
              Differentiable rasterisers may expose what densification needs, under gsplat's
              packed names: "means2d" (V, 2) pixel positions of the V drawn Gaussians (a
              non-leaf tensor of the graph, so ``retain_grad`` gives their screen-space
              gradients), "gaussian_ids" (V,) int64 their indices in [0, N), "radii" (V,)
              their screen extent in pixels.
    """

    features: torch.Tensor
    alpha: torch.Tensor
    depth: torch.Tensor
    extras: dict[str, torch.Tensor] = field(default_factory=dict)
