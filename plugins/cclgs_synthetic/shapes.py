"""Surface primitives and the library of object classes the synthetic world is built from.

Every primitive samples points uniformly by area on its surface, with outward unit normals, in
the object's local frame (z up, the object standing on z = 0). The world turns each sample into
a flat Gaussian disc lying in the tangent plane.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RGB = tuple[float, float, float]


@dataclass(frozen=True)
class Cylinder:
    """Side of a vertical cylinder (optionally with caps) centred on the z axis."""

    radius: float
    height: float
    z0: float = 0.0
    bottom: bool = False
    top: bool = False

    def area(self) -> float:
        caps = (int(self.bottom) + int(self.top)) * np.pi * self.radius**2
        return 2 * np.pi * self.radius * self.height + caps

    def sample(self, rng: np.random.Generator, count: int) -> tuple[np.ndarray, np.ndarray]:
        """Returns points (count, 3) and normals (count, 3)."""
        caps = [z for z, keep in ((self.z0, self.bottom), (self.z0 + self.height, self.top)) if keep]
        side_share = 2 * np.pi * self.radius * self.height / self.area()
        side_count = int(round(count * side_share)) if caps else count
        theta = rng.uniform(0, 2 * np.pi, side_count)
        points = [
            np.stack(
                [
                    self.radius * np.cos(theta),
                    self.radius * np.sin(theta),
                    rng.uniform(self.z0, self.z0 + self.height, side_count),
                ],
                1,
            )
        ]
        normals = [np.stack([np.cos(theta), np.sin(theta), np.zeros(side_count)], 1)]
        remaining = count - side_count
        for index, z in enumerate(caps):
            share = remaining // len(caps) + (remaining % len(caps) if index == 0 else 0)
            cap_points, cap_normals = Disc(self.radius, z, up=z > self.z0).sample(rng, share)
            points.append(cap_points)
            normals.append(cap_normals)
        return np.concatenate(points), np.concatenate(normals)


@dataclass(frozen=True)
class Disc:
    """A horizontal disc at height ``z`` facing up (or down)."""

    radius: float
    z: float
    center: tuple[float, float] = (0.0, 0.0)
    up: bool = True

    def area(self) -> float:
        return np.pi * self.radius**2

    def sample(self, rng: np.random.Generator, count: int) -> tuple[np.ndarray, np.ndarray]:
        r = self.radius * np.sqrt(rng.uniform(0, 1, count))
        theta = rng.uniform(0, 2 * np.pi, count)
        points = np.stack(
            [self.center[0] + r * np.cos(theta), self.center[1] + r * np.sin(theta), np.full(count, self.z)], 1
        )
        normals = np.tile([0.0, 0.0, 1.0 if self.up else -1.0], (count, 1))
        return points, normals


@dataclass(frozen=True)
class Sphere:
    """A sphere, or the zone of it between heights ``center.z + z_low`` and ``center.z + z_high``."""

    radius: float
    center: tuple[float, float, float]
    z_low: float | None = None
    z_high: float | None = None

    def _range(self) -> tuple[float, float]:
        low = -self.radius if self.z_low is None else self.z_low
        high = self.radius if self.z_high is None else self.z_high
        return low, high

    def area(self) -> float:
        low, high = self._range()
        return 2 * np.pi * self.radius * (high - low)  # Archimedes: zone area is linear in height

    def sample(self, rng: np.random.Generator, count: int) -> tuple[np.ndarray, np.ndarray]:
        low, high = self._range()
        z = rng.uniform(low, high, count)
        theta = rng.uniform(0, 2 * np.pi, count)
        ring = np.sqrt(np.clip(self.radius**2 - z**2, 0, None))
        offsets = np.stack([ring * np.cos(theta), ring * np.sin(theta), z], 1)
        return offsets + np.asarray(self.center), offsets / self.radius


@dataclass(frozen=True)
class Frustum:
    """Side of a vertical cone frustum: radius ``r_bottom`` at ``z0``, ``r_top`` at ``z0 + height``."""

    r_bottom: float
    r_top: float
    height: float
    z0: float = 0.0

    def area(self) -> float:
        slant = np.hypot(self.height, self.r_bottom - self.r_top)
        return np.pi * (self.r_bottom + self.r_top) * slant

    def sample(self, rng: np.random.Generator, count: int) -> tuple[np.ndarray, np.ndarray]:
        u = rng.uniform(0, 1, count)
        a, b = (self.r_top - self.r_bottom) / 2, self.r_bottom
        # Height fraction t with density proportional to the radius: solve a t^2 + b t = u (a + b).
        t = u if abs(a) < 1e-12 else (-b + np.sqrt(b * b + 4 * a * u * (a + b))) / (2 * a)
        radius = self.r_bottom + (self.r_top - self.r_bottom) * t
        theta = rng.uniform(0, 2 * np.pi, count)
        points = np.stack([radius * np.cos(theta), radius * np.sin(theta), self.z0 + t * self.height], 1)
        normals = np.stack(
            [self.height * np.cos(theta), self.height * np.sin(theta), np.full(count, self.r_bottom - self.r_top)], 1
        )
        return points, normals / np.linalg.norm(normals, axis=1, keepdims=True)


@dataclass(frozen=True)
class Box:
    """An axis-aligned box of ``size`` (x, y, z) standing on z = ``z0``, centred on the z axis."""

    size: tuple[float, float, float]
    z0: float = 0.0

    def _faces(self) -> list[tuple[int, float, float]]:
        """(axis, sign, area) of the six faces."""
        sx, sy, sz = self.size
        areas = (sy * sz, sx * sz, sx * sy)
        return [(axis, sign, areas[axis]) for axis in range(3) for sign in (-1.0, 1.0)]

    def area(self) -> float:
        return sum(area for _, _, area in self._faces())

    def sample(self, rng: np.random.Generator, count: int) -> tuple[np.ndarray, np.ndarray]:
        faces = self._faces()
        shares = np.array([area for _, _, area in faces]) / self.area()
        counts = np.floor(shares * count).astype(int)
        counts[np.argmax(shares)] += count - counts.sum()
        half = np.asarray(self.size) / 2
        center = np.array([0.0, 0.0, self.z0 + half[2]])
        points, normals = [], []
        for (axis, sign, _), face_count in zip(faces, counts):
            local = rng.uniform(-1, 1, (face_count, 3)) * half
            local[:, axis] = sign * half[axis]
            normal = np.zeros((face_count, 3))
            normal[:, axis] = sign
            points.append(local + center)
            normals.append(normal)
        return np.concatenate(points), np.concatenate(normals)


@dataclass(frozen=True)
class Torus:
    """A torus (or an arc of it, ``theta`` in radians) with major radius ``major`` and tube radius ``minor``.

    ``frame`` (3 rows) gives the world directions of the torus' local x, y (the ring's plane) and z
    (its axis); the identity lays it flat.
    """

    major: float
    minor: float
    center: tuple[float, float, float]
    theta: tuple[float, float] = (0.0, 2 * np.pi)
    frame: tuple[tuple[float, float, float], ...] = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))

    def area(self) -> float:
        return 4 * np.pi**2 * self.major * self.minor * (self.theta[1] - self.theta[0]) / (2 * np.pi)

    def sample(self, rng: np.random.Generator, count: int) -> tuple[np.ndarray, np.ndarray]:
        thetas, phis = [], []
        while sum(len(t) for t in thetas) < count:  # rejection: density proportional to the ring radius
            theta = rng.uniform(*self.theta, 2 * count)
            phi = rng.uniform(0, 2 * np.pi, 2 * count)
            keep = rng.uniform(0, 1, 2 * count) < (self.major + self.minor * np.cos(phi)) / (self.major + self.minor)
            thetas.append(theta[keep])
            phis.append(phi[keep])
        theta, phi = np.concatenate(thetas)[:count], np.concatenate(phis)[:count]
        ring = self.major + self.minor * np.cos(phi)
        local_points = np.stack([ring * np.cos(theta), ring * np.sin(theta), self.minor * np.sin(phi)], 1)
        local_normals = np.stack([np.cos(phi) * np.cos(theta), np.cos(phi) * np.sin(theta), np.sin(phi)], 1)
        frame = np.asarray(self.frame)
        return local_points @ frame + np.asarray(self.center), local_normals @ frame


Primitive = Cylinder | Disc | Sphere | Frustum | Box | Torus


@dataclass(frozen=True)
class PartSpec:
    """A named part: primitives with their colours."""

    name: str
    pieces: tuple[tuple[Primitive, RGB], ...]


@dataclass(frozen=True)
class ObjectClass:
    """A class of objects. ``name`` is also the text a user types to find it (its query)."""

    name: str
    parts: tuple[PartSpec, ...]
    #: Radius of the object's footprint on the table, for placement without overlap.
    footprint: float


_XZ_FRAME = ((1.0, 0.0, 0.0), (0.0, 0.0, 1.0), (0.0, 1.0, 0.0))  # ring in the xz plane

#: Objects made of several parts, so that the part (``sp``) and whole (``wp``) levels differ.
OBJECTS_WITH_PARTS: tuple[ObjectClass, ...] = (
    ObjectClass(
        "red mug",
        (
            PartSpec(
                "body",
                ((Cylinder(0.11, 0.24, bottom=True), (0.78, 0.10, 0.12)), (Disc(0.105, 0.2), (0.30, 0.16, 0.08))),
            ),
            PartSpec(
                "handle",
                ((Torus(0.07, 0.022, (0.11, 0.0, 0.12), (-np.pi / 2, np.pi / 2), _XZ_FRAME), (0.60, 0.06, 0.10)),),
            ),
        ),
        footprint=0.2,
    ),
    ObjectClass(
        "ramen bowl",
        (
            PartSpec("bowl", ((Sphere(0.18, (0.0, 0.0, 0.18), z_high=0.0), (0.20, 0.27, 0.60)),)),
            PartSpec(
                "noodles",
                ((Disc(0.165, 0.16), (0.96, 0.82, 0.40)), (Disc(0.05, 0.165, center=(0.06, 0.03)), (0.98, 0.95, 0.85))),
            ),
        ),
        footprint=0.19,
    ),
    ObjectClass(
        "desk lamp",
        (
            PartSpec(
                "stand",
                (
                    (Cylinder(0.1, 0.03, top=True), (0.15, 0.15, 0.17)),
                    (Cylinder(0.015, 0.27, z0=0.03), (0.55, 0.56, 0.60)),
                ),
            ),
            PartSpec(
                "shade",
                ((Frustum(0.14, 0.07, 0.14, z0=0.28), (0.95, 0.70, 0.15)), (Disc(0.07, 0.42), (0.85, 0.62, 0.12))),
            ),
        ),
        footprint=0.15,
    ),
    ObjectClass(
        "rubber duck",
        (
            PartSpec("body", ((Sphere(0.11, (0.0, 0.0, 0.1), z_low=-0.1), (0.98, 0.85, 0.10)),)),
            PartSpec(
                "head",
                (
                    (Sphere(0.07, (0.07, 0.0, 0.23)), (0.98, 0.88, 0.15)),
                    (Sphere(0.03, (0.14, 0.0, 0.22)), (1.00, 0.50, 0.00)),
                ),
            ),
        ),
        footprint=0.14,
    ),
    ObjectClass(
        "traffic cone",
        (
            PartSpec("base", ((Box((0.22, 0.22, 0.025)), (0.70, 0.25, 0.05)),)),
            PartSpec(
                "cone",
                (
                    (Frustum(0.09, 0.06, 0.1, z0=0.025), (1.00, 0.45, 0.05)),
                    (Frustum(0.06, 0.045, 0.05, z0=0.125), (0.95, 0.95, 0.95)),
                    (Frustum(0.045, 0.012, 0.17, z0=0.175), (1.00, 0.45, 0.05)),
                ),
            ),
        ),
        footprint=0.16,
    ),
)

#: Objects of a single part.
SINGLE_PART_OBJECTS: tuple[ObjectClass, ...] = (
    ObjectClass(
        "green apple",
        (
            PartSpec(
                "apple",
                (
                    (Sphere(0.085, (0.0, 0.0, 0.085)), (0.45, 0.75, 0.20)),
                    (Cylinder(0.008, 0.03, z0=0.165), (0.35, 0.22, 0.10)),
                ),
            ),
        ),
        0.09,
    ),
    ObjectClass("blue book", (PartSpec("book", ((Box((0.28, 0.2, 0.07)), (0.15, 0.30, 0.75)),)),), 0.18),
    ObjectClass(
        "glazed donut", (PartSpec("donut", ((Torus(0.085, 0.045, (0.0, 0.0, 0.045)), (0.90, 0.55, 0.62)),)),), 0.13
    ),
    ObjectClass(
        "soda can",
        (
            PartSpec(
                "can",
                (
                    (Cylinder(0.065, 0.2, bottom=True, top=True), (0.72, 0.74, 0.78)),
                    (Cylinder(0.066, 0.1, z0=0.05), (0.10, 0.55, 0.55)),
                ),
            ),
        ),
        0.07,
    ),
    ObjectClass("cardboard box", (PartSpec("box", ((Box((0.24, 0.2, 0.2)), (0.70, 0.52, 0.30)),)),), 0.16),
    ObjectClass("tennis ball", (PartSpec("ball", ((Sphere(0.05, (0.0, 0.0, 0.05)), (0.80, 0.93, 0.20)),)),), 0.05),
)

#: The supporting plane, itself a class with ground truth.
TABLE_NAME = "wooden table"
TABLE_HALF_SIZE = 0.95
TABLE_COLOR: RGB = (0.55, 0.38, 0.22)
