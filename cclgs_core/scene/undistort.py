"""Lens undistortion of perspective photos, done the way nerfstudio does it for splatfacto.

A transforms file may describe a camera with radial (k1, k2, k3) and tangential (p1, p2)
distortion, the model of OpenCV and of COLMAP's OPENCV camera. cclgs works on pinhole images,
so such a photo is undistorted with OpenCV on load, exactly as nerfstudio's full-image data
manager does before splatfacto sees it: ``cv2.getOptimalNewCameraMatrix`` with alpha 0 (only
pixels that have a source pixel are kept), ``cv2.undistort``, then a crop to the valid region,
which also moves the principal point. Doing it the same way keeps a frame's undistorted image
and camera identical under ``cclgs`` and under ``ns-train ccl-lgs``. nerfstudio's fourth radial
coefficient k4 (an r^8 term) has no OpenCV equivalent; like nerfstudio, it must be 0.

OpenCV puts pixel centres at integer coordinates, cclgs (like nerfstudio) at +0.5, hence the
half-pixel shifts below.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from cclgs_core.types import Camera


@dataclass(frozen=True)
class LensDistortion:
    """How to turn one distorted photo into a pinhole image.

    source:       the camera of the distorted photo, full resolution
    coefficients: (5,) float64 OpenCV's (k1, k2, p1, p2, k3)
    matrix:       (3, 3) float64 OpenCV's new camera matrix, before the crop (pixel centres at integers)
    crop:         (x, y, width, height) of the valid region in the undistorted image
    camera:       the undistorted, cropped pinhole camera, full resolution
    """

    source: Camera
    coefficients: np.ndarray
    matrix: np.ndarray
    crop: tuple[int, int, int, int]
    camera: Camera


def opencv_matrix(camera: Camera) -> np.ndarray:
    """(3, 3) float64 intrinsics with OpenCV's pixel centres (cclgs's minus half a pixel)."""
    matrix = camera.intrinsics.copy()
    matrix[:2, 2] -= 0.5
    return matrix


def lens_distortion(source: Camera, k1: float, k2: float, k3: float, p1: float, p2: float) -> LensDistortion:
    """The undistortion of a photo taken by ``source`` with these coefficients."""
    import cv2

    coefficients = np.array([k1, k2, p1, p2, k3], dtype=np.float64)
    size = (source.width, source.height)
    matrix, (x, y, width, height) = cv2.getOptimalNewCameraMatrix(opencv_matrix(source), coefficients, size, 0)
    camera = replace(
        source,
        fx=float(matrix[0, 0]),
        fy=float(matrix[1, 1]),
        cx=float(matrix[0, 2]) - x + 0.5,
        cy=float(matrix[1, 2]) - y + 0.5,
        width=int(width),
        height=int(height),
    )
    return LensDistortion(source, coefficients, np.asarray(matrix, dtype=np.float64), (x, y, width, height), camera)


def undistort_image(image: np.ndarray, distortion: LensDistortion) -> np.ndarray:
    """(H, W, C) uint8 distorted photo at the source resolution -> (h, w, C) uint8 pinhole image
    at ``distortion.camera``'s resolution."""
    import cv2

    x, y, width, height = distortion.crop
    pinhole = cv2.undistort(image, opencv_matrix(distortion.source), distortion.coefficients, None, distortion.matrix)
    return np.ascontiguousarray(pinhole[y : y + height, x : x + width])
