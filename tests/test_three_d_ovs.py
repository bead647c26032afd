"""3D-OVS read as released and scored as its authors score it (github Kunhao-Liu/3D-OVS,
``dataLoader/llff.py`` and ``renderer.py``).

Every expectation here is worked out by hand from the authors' rules: a mask pixel is its class
only at grey 255 after PIL's conversion to "L"; sizes at 1/8 are ``int(W / 8)``; IoU per class
with 0 for a class in neither truth nor prediction; accuracy over whole rows of class labels.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cclgs_core.datasets import load_scene
from cclgs_core.datasets.three_d_ovs import read_class_masks
from cclgs_core.errors import DataError
from cclgs_core.evaluation.class_masks import score_view

WIDTH, HEIGHT, FOCAL = 107, 61, 100.0


def rotation_about_up(degrees: float) -> np.ndarray:
    """(3, 3) rotation about the world's y (up) axis; its columns are a camera's right, up, back axes."""
    angle = np.radians(degrees)
    return np.array([[np.cos(angle), 0, np.sin(angle)], [0, 1, 0], [-np.sin(angle), 0, np.cos(angle)]])


#: Three cameras of an LLFF scene: (right-up-back rotation, centre, near bound). Their backwards
#: axes average to +z and their centres to (0, 1, 5), so the average camera is the identity at
#: (0, 1, 5); the nearest bound 1.5 scales the world by 1 / (0.75 * 1.5) = 8 / 9.
LLFF_CAMERAS = [
    (rotation_about_up(90), (-2.0, 1.0, 5.0), 1.5),
    (rotation_about_up(0), (0.0, 1.0, 5.0), 2.0),
    (rotation_about_up(-90), (2.0, 1.0, 5.0), 3.0),
]


def write_poses_bounds(path: Path, cameras=LLFF_CAMERAS, hwf=(HEIGHT, WIDTH, FOCAL)) -> None:
    """poses_bounds.npy: per camera the 3x5 matrix (down, right, back, centre, hwf) row by row, near, far."""
    rows = []
    for rotation, centre, near in cameras:
        right, up, back = rotation.T
        matrix = np.stack([-up, right, back, np.array(centre), np.array(hwf, dtype=float)], axis=1)  # (3, 5)
        rows.append(np.concatenate([matrix.reshape(-1), [near, 10.0]]))
    np.save(path, np.array(rows))


def write_released_scene(root: Path, masks: dict[str, dict[str, Image.Image]], image_size=(WIDTH, HEIGHT)) -> Path:
    """A 3D-OVS scene as released, with LLFF cameras only: three images, classes.txt (unsorted) and
    ``masks`` = {view folder: {class: mask image}}."""
    scene = root / "scene"
    (scene / "images").mkdir(parents=True)
    for index in range(len(LLFF_CAMERAS)):
        Image.new("RGB", image_size, (40 * index, 90, 160)).save(scene / "images" / f"IMG_{index:04d}.jpg")
    write_poses_bounds(scene / "poses_bounds.npy")
    segmentations = scene / "segmentations"
    segmentations.mkdir()
    classes = sorted({name for view in masks.values() for name in view}, reverse=True)
    (segmentations / "classes.txt").write_text("\n".join(classes) + "\n")
    for folder, view in masks.items():
        (segmentations / folder).mkdir()
        for name, image in view.items():
            image.save(segmentations / folder / f"{name}.png")
    return scene


def grey(values) -> Image.Image:
    return Image.fromarray(np.array(values, dtype=np.uint8), mode="L")


# -- masks ----------------------------------------------------------------------------------------


def test_mask_modes_follow_the_authors_255_rule(tmp_path):
    """Grey-edged, RGB, 1-bit and palette masks, an overlap and an empty mask, read at full size."""
    rgb = np.zeros((2, 3, 3), dtype=np.uint8)
    rgb[0, 0] = (255, 255, 255)  # white: grey 255, the class
    rgb[0, 1] = (255, 0, 0)  # red: grey 76, background
    rgb[1, 2] = (250, 250, 250)  # near white: grey 250, background
    palette = Image.fromarray(np.array([[0, 1, 2], [1, 0, 2]], dtype=np.uint8), mode="P")
    palette.putpalette([0, 0, 0, 255, 255, 255, 128, 128, 128])  # indices 0, 1, 2: black, white, grey
    one_bit = Image.fromarray(np.array([[0, 0, 1], [0, 1, 1]], dtype=bool)).convert("1")
    folder = tmp_path / "00"
    folder.mkdir()
    images = {
        "edged": grey([[255, 254, 200], [128, 255, 0]]),  # only the two 255s count
        "rgb": Image.fromarray(rgb, mode="RGB"),
        "palette": palette,
        "one_bit": one_bit,
        "overlap": grey([[255, 255, 0], [0, 255, 255]]),  # shares (0, 0) with rgb, (1, 1) with edged
        "empty": grey([[0, 0, 0], [0, 0, 0]]),
    }
    for name, image in images.items():
        image.save(folder / f"{name}.png")
    masks = read_class_masks(folder, list(images), (3, 2))
    expected = {
        "edged": [[1, 0, 0], [0, 1, 0]],
        "rgb": [[1, 0, 0], [0, 0, 0]],
        "palette": [[0, 1, 0], [1, 0, 0]],
        "one_bit": [[0, 0, 1], [0, 1, 1]],
        "overlap": [[1, 1, 0], [0, 1, 1]],
        "empty": [[0, 0, 0], [0, 0, 0]],
    }
    assert masks.dtype == bool and masks.shape == (6, 2, 3)
    for index, name in enumerate(images):
        assert masks[index].astype(int).tolist() == expected[name], name


def test_masks_are_resized_by_nearest_neighbour_before_the_rule(tmp_path):
    # 8x4 -> 4x2: PIL's nearest sampling takes source columns 1, 3, 5, 7 and rows 1, 3.
    mask = np.zeros((4, 8), dtype=np.uint8)
    mask[1, 1], mask[1, 3], mask[3, 5] = 255, 254, 255
    mask[0, 0] = 255  # never sampled
    folder = tmp_path / "00"
    folder.mkdir()
    grey(mask).save(folder / "cup.png")
    (read,) = read_class_masks(folder, ["cup"], (4, 2))
    assert read.astype(int).tolist() == [[1, 0, 0, 0], [0, 0, 1, 0]]


# -- cameras and sizes ------------------------------------------------------------------------------


def test_a_scene_with_only_poses_bounds_reads_with_the_authors_normalisation(tmp_path):
    view = {"bowl": grey(np.full((HEIGHT, WIDTH), 255)), "apple": grey(np.zeros((HEIGHT, WIDTH)))}
    scene_dir = write_released_scene(tmp_path, {"01": view})
    scene = load_scene(scene_dir)
    assert scene.class_names == ("apple", "bowl")  # classes.txt lists them unsorted
    assert [frame.name for frame in scene.frames] == ["IMG_0000", "IMG_0001", "IMG_0002"]
    assert [frame.split for frame in scene.frames] == ["train", "test", "train"]
    assert scene.points_path is None
    scale = 8 / 9  # 1 / (0.75 * nearest bound 1.5)
    # OpenCV axes (right, down, forward) = LLFF's (right, down, -back), in the average camera's frame.
    expected = [
        ([[0, 0, -1], [0, -1, 0], [-1, 0, 0]], [-2 * scale, 0, 0]),  # right -z, down -y, looks along -x
        ([[1, 0, 0], [0, -1, 0], [0, 0, -1]], [0, 0, 0]),
        ([[0, 0, 1], [0, -1, 0], [1, 0, 0]], [2 * scale, 0, 0]),
    ]
    for frame, (rotation, centre) in zip(scene.frames, expected):
        camera = frame.camera
        assert np.allclose(camera.camera_to_world[:3, :3], rotation, atol=1e-12)
        assert np.allclose(camera.center, centre, atol=1e-12)
        assert (camera.width, camera.height) == (WIDTH, HEIGHT)
        assert (camera.fx, camera.fy, camera.cx, camera.cy) == (FOCAL, FOCAL, WIDTH / 2, HEIGHT / 2)


def test_sizes_at_one_eighth_are_truncated_as_the_authors_truncate(tmp_path):
    mask = np.zeros((HEIGHT, WIDTH), dtype=np.uint8)
    mask[:, 60:] = 255
    scene_dir = write_released_scene(tmp_path, {"00": {"bowl": grey(mask), "apple": grey(255 - mask)}})
    scene = load_scene(scene_dir, downscale=8)
    frame = scene.frames[0]
    # int(107 / 8) = 13 and int(61 / 8) = 7, where rounding would give 13 x 8.
    assert (frame.camera.width, frame.camera.height) == (13, 7)
    assert frame.camera.fx == pytest.approx(FOCAL * 13 / WIDTH) and frame.camera.fy == pytest.approx(FOCAL * 7 / HEIGHT)
    assert frame.load_image().shape == (7, 13, 3)
    apple, bowl = read_class_masks(frame.ground_truth["class_masks"], list(scene.class_names), (13, 7))
    # Nearest sampling of 13 columns out of 107 takes column int((x + 0.5) * 107 / 13): 7 of them are >= 60.
    assert bowl.sum(axis=1).tolist() == [6] * 7 and not (apple & bowl).any() and (apple | bowl).all()


def test_llff_files_that_do_not_fit_the_images_are_refused(tmp_path):
    view = {"bowl": grey(np.zeros((HEIGHT, WIDTH)))}
    scene_dir = write_released_scene(tmp_path, {"00": view})
    # Images of twice the size (same aspect ratio) are resized to the poses' size, as the authors do.
    for path in (scene_dir / "images").iterdir():
        Image.new("RGB", (2 * WIDTH, 2 * HEIGHT)).save(path)
    assert load_scene(scene_dir).frames[0].load_image().shape == (HEIGHT, WIDTH, 3)
    Image.new("RGB", (WIDTH, WIDTH)).save(scene_dir / "images" / "IMG_0001.jpg")
    with pytest.raises(DataError, match=r"poses_bounds.npy: row 1 was made for 107x61 images.*107x107"):
        load_scene(scene_dir)
    Image.new("RGB", (WIDTH, HEIGHT)).save(scene_dir / "images" / "IMG_0001.jpg")
    Image.new("RGB", (WIDTH, HEIGHT)).save(scene_dir / "images" / "IMG_0003.jpg")
    with pytest.raises(DataError, match=r"poses_bounds.npy: 3 poses for 4 images"):
        load_scene(scene_dir)
    (scene_dir / "images" / "IMG_0003.jpg").unlink()
    np.save(scene_dir / "poses_bounds.npy", np.zeros((3, 15)))
    with pytest.raises(DataError, match=r"expected an \(N, 17\) array"):
        load_scene(scene_dir)
    (scene_dir / "poses_bounds.npy").unlink()
    with pytest.raises(DataError, match="not a scene folder.*poses_bounds.npy"):
        load_scene(scene_dir)


# -- scores -----------------------------------------------------------------------------------------

#: One 2x3 view with classes a, b, c: a and b overlap at (0, 1), c's mask is empty, (1, *) unlabelled.
TRUTH = np.array(
    [
        [[1, 1, 0], [0, 0, 0]],  # a
        [[0, 1, 1], [0, 0, 0]],  # b
        [[0, 0, 0], [0, 0, 0]],  # c
    ],
    dtype=bool,
)
PREDICTED = np.array([[0, 0, 1], [1, 0, 0]])  # class index per pixel; c is never predicted


def test_view_scores_match_the_hand_computed_ones():
    score = score_view(TRUTH, PREDICTED)
    # a: predicted at (0,0) (0,1) (1,1) (1,2), true at (0,0) (0,1): 2 / 4. b: predicted (0,2) (1,0),
    # true (0,1) (0,2): 1 / 3. c: in neither: NaN here, 0 by the authors' rule.
    assert score.ious[:2] == pytest.approx([0.5, 1 / 3]) and np.isnan(score.ious[2])
    # Rows right: (0,0) [1,0,0] and (0,2) [0,1,0]; (0,1) is [1,1,0] (overlap) and row 1 is unlabelled.
    assert score.accuracy == pytest.approx(2 / 6)
    authors_view_miou = np.mean(np.nan_to_num(score.ious, nan=0.0))
    assert authors_view_miou == pytest.approx(5 / 18)


def test_view_scores_equal_scikit_learns_on_the_authors_label_matrices():
    metrics = pytest.importorskip("sklearn.metrics")
    generator = np.random.default_rng(0)
    for _ in range(20):
        truth = generator.random((4, 5, 6)) < 0.3  # overlaps and unlabelled pixels
        truth[3] = False  # one class absent from the truth
        predicted = generator.integers(0, 3, size=(5, 6))  # class 3 never predicted
        score = score_view(truth, predicted)
        rows = truth.reshape(4, -1).T.astype(np.int8)  # (pixels, classes), as the authors' loader stacks them
        one_hot = np.eye(4, dtype=np.int8)[predicted.reshape(-1)]
        with warnings.catch_warnings():  # scikit-learn warns of the class in neither, then scores it 0
            warnings.simplefilter("ignore")
            expected = metrics.jaccard_score(rows, one_hot, average=None)
        assert np.nan_to_num(score.ious, nan=0.0) == pytest.approx(expected)
        assert score.accuracy == pytest.approx(metrics.accuracy_score(rows, one_hot))
