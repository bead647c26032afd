"""LERF-OVS style label files (the ISAT annotation tool's JSON) traced from a class map.

Coordinates follow the LERF-OVS files: ``[x, y]`` with x the column and y the row of a pixel,
pixel centres at integer coordinates, polygons open (first point not repeated), boxes as
corners ``[x1, y1, x2, y2]``. Each connected region of a class becomes one object. Polygons
cannot have holes in this format, so a region with holes (the table around the objects on it,
a donut seen from above) is first cut along image rows through its holes into hole-free
pieces, each written as one more object of the same category (evaluators OR the polygons of a
category), so that the polygons re-rasterise to the class map.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

#: Regions smaller than this many pixels are specks, not annotated.
MIN_REGION_PIXELS = 4


def trace_polygons(mask: np.ndarray) -> list[np.ndarray]:
    """mask: (H, W) bool. Returns hole-free polygons covering it, each (V, 2) float64 [x, y], open."""
    return [polygon for piece in _hole_free_pieces(mask) for polygon in _outer_contours(piece)]


def _hole_free_pieces(mask: np.ndarray) -> list[np.ndarray]:
    """mask: (H, W) bool -> (H, W) bool pieces without holes whose union is the mask."""
    from scipy.ndimage import binary_fill_holes, label

    # Background is 8-connected, as for find_contours with its default fully_connected="low".
    holes = binary_fill_holes(mask, structure=np.ones((3, 3), dtype=bool)) & ~mask
    if not holes.any():
        return [mask]
    components, _ = label(holes, structure=np.ones((3, 3), dtype=bool))
    rows = np.nonzero(components == 1)[0]
    cut = (int(rows.min()) + int(rows.max()) + 1) // 2  # a row through the first hole
    top, bottom = mask.copy(), mask.copy()
    top[cut:] = False
    bottom[:cut] = False
    return [piece for half in (top, bottom) if half.any() for piece in _hole_free_pieces(half)]


def _outer_contours(mask: np.ndarray) -> list[np.ndarray]:
    """mask: (H, W) bool without holes -> the boundary of each region, (V, 2) [x, y], open."""
    from skimage.measure import find_contours

    padded = np.pad(mask.astype(np.float64), 1)
    polygons = []
    for contour in find_contours(padded, 0.5):
        xs, ys = contour[:, 1] - 1.0, contour[:, 0] - 1.0  # undo the padding
        signed_area = 0.5 * np.sum(xs[:-1] * ys[1:] - xs[1:] * ys[:-1])
        if signed_area <= 0:  # find_contours winds holes the other way round
            continue
        polygon = np.stack([xs, ys], axis=1)[:-1]
        if _filled_pixels(polygon, mask.shape) >= MIN_REGION_PIXELS:
            polygons.append(polygon)
    return polygons


def _filled_pixels(polygon: np.ndarray, shape: tuple[int, int]) -> int:
    from skimage.draw import polygon as fill

    rows, _ = fill(polygon[:, 1], polygon[:, 0], shape)
    return len(rows)


def rasterize_polygon(polygon: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """polygon: (V, 2) [x, y]. Returns (H, W) bool, the pixels whose centres lie inside."""
    from skimage.draw import polygon as fill

    mask = np.zeros(shape, dtype=bool)
    rows, cols = fill(polygon[:, 1], polygon[:, 0], shape)
    mask[rows, cols] = True
    return mask


def isat_labels(class_map: np.ndarray, depth: np.ndarray, categories: Sequence[str], image_name: str) -> dict:
    """The ISAT JSON of one view.

    class_map:  (H, W) int class id per pixel, -1 for none
    depth:      (H, W) float depth, used to order layers (farther regions get lower layers)
    categories: text of each class id (written as the object's ``category``)
    """
    height, width = class_map.shape
    regions = []
    for class_id in np.unique(class_map[class_map >= 0]):
        mask = class_map == class_id
        for polygon in trace_polygons(mask):
            inside = rasterize_polygon(polygon, mask.shape) & mask
            mean_depth = float(depth[inside].mean()) if inside.any() else 0.0
            regions.append((-mean_depth, int(class_id), polygon))
    regions.sort(key=lambda region: (region[0], region[1]))
    objects = []
    for layer, (_, class_id, polygon) in enumerate(regions, start=1):
        xs, ys = polygon[:, 0], polygon[:, 1]
        area = 0.5 * abs(np.sum(xs * np.roll(ys, -1) - np.roll(xs, -1) * ys))
        objects.append(
            {
                "category": categories[class_id],
                "group": class_id + 1,
                "segmentation": [[round(float(x), 3), round(float(y), 3)] for x, y in polygon],
                "area": round(float(area), 3),
                "layer": float(layer),
                "bbox": [round(float(v), 3) for v in (xs.min(), ys.min(), xs.max(), ys.max())],
                "iscrowd": 0,
                "note": "",
            }
        )
    return {"info": {"name": image_name, "width": width, "height": height, "depth": 3, "note": ""}, "objects": objects}
