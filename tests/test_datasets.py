"""Scene readers: nerfstudio transforms.json, COLMAP, LERF-OVS labels, splatfacto checkpoints."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cclgs_core.datasets import load_points, load_scene
from cclgs_core.datasets.colmap import load_colmap
from cclgs_core.datasets.lerf_ovs import load_lerf_ovs, read_ovs_labels, write_ovs_labels
from cclgs_core.datasets.nerfstudio import read_classes
from cclgs_core.datasets.splatfacto import load_splatfacto, rotate_sh, transform_gaussians
from cclgs_core.errors import ConfigError, DataError
from cclgs_core.evaluation.labelmaps import write_label_map
from cclgs_core.scene.gaussians import Gaussians
from cclgs_core.scene.ply import write_gaussians, write_points
from cclgs_core.types import Camera

WIDTH, HEIGHT = 16, 12
INTRINSICS = {"fl_x": 20.0, "fl_y": 21.0, "cx": 7.5, "cy": 6.0, "w": WIDTH, "h": HEIGHT}
OPENGL_FLIP = np.diag([1.0, -1.0, -1.0, 1.0])
LABELS_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "lerf_ovs_labels" / "waldo_kitchen"


def rotation(axis: str, angle: float) -> np.ndarray:
    """(3, 3) rotation about a coordinate axis."""
    c, s = np.cos(angle), np.sin(angle)
    return {
        "x": np.array([[1, 0, 0], [0, c, -s], [0, s, c]]),
        "y": np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]),
        "z": np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]),
    }[axis]


def opengl_pose(index: int) -> np.ndarray:
    """(4, 4) an OpenGL camera-to-world matrix looking roughly at the origin."""
    pose = np.eye(4)
    pose[:3, :3] = rotation("y", 0.3 * index) @ rotation("x", -0.2)
    pose[:3, 3] = pose[:3, :3] @ np.array([0.0, 0.0, 4.0])  # OpenGL looks along -z
    return pose


def write_image(path: Path, size=(WIDTH, HEIGHT), value: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(value)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3)).astype(np.uint8)).save(path)


def nerfstudio_scene(root: Path, count: int = 3, **top_level) -> dict:
    """Write images and return a transforms.json dict (written by ``save``) for ``count`` frames."""
    frames = []
    for index in reversed(range(count)):  # unsorted on purpose
        write_image(root / "images" / f"frame_{index:05d}.png", value=index)
        frames.append({"file_path": f"images/frame_{index:05d}.png", "transform_matrix": opengl_pose(index).tolist()})
    return {**INTRINSICS, "camera_model": "OPENCV", "frames": frames, **top_level}


def save(root: Path, meta: dict) -> Path:
    path = root / "transforms.json"
    path.write_text(json.dumps(meta))
    return path


# --------------------------------------------------------------------------- nerfstudio


def test_nerfstudio_reads_cameras_paths_and_extras(tmp_path):
    meta = nerfstudio_scene(tmp_path)
    write_points(tmp_path / "sparse_pc.ply", np.ones((4, 3), np.float32), np.full((4, 3), 7, np.uint8))
    gaussians = Gaussians(torch.zeros(2, 3), torch.ones(2, 4), torch.zeros(2, 3), torch.zeros(2), torch.zeros(2, 1, 3))
    write_gaussians(tmp_path / "gaussians.ply", gaussians)
    write_label_map(tmp_path / "gt" / "class_00001.png", np.zeros((HEIGHT, WIDTH), np.int32))
    meta["ply_file_path"] = "sparse_pc.ply"
    meta["gaussians_file_path"] = "gaussians.ply"
    meta["frames"][1]["ground_truth"] = {"class": "gt/class_00001.png"}  # frame_00001
    (tmp_path / "classes.json").write_text(
        json.dumps(
            {"classes": [{"id": 1, "name": "mug", "query": "a red mug"}, {"id": 0, "name": "table", "query": "table"}]}
        )
    )
    scene = load_scene(save(tmp_path, meta))
    assert [frame.name for frame in scene.frames] == ["frame_00000", "frame_00001", "frame_00002"]
    assert [frame.index for frame in scene.frames] == [0, 1, 2]
    assert all(frame.split == "train" for frame in scene.frames)
    assert scene.frames[1].ground_truth == {"class": tmp_path / "gt" / "class_00001.png"}
    assert scene.points_path == tmp_path / "sparse_pc.ply" and scene.gaussians_path == tmp_path / "gaussians.ply"
    assert scene.class_names == ("table", "mug")
    assert read_classes(tmp_path / "classes.json")[1].query == "a red mug"
    camera = scene.frames[2].camera
    assert (camera.fx, camera.fy, camera.cx, camera.cy, camera.width, camera.height) == (
        20.0,
        21.0,
        7.5,
        6.0,
        WIDTH,
        HEIGHT,
    )
    np.testing.assert_allclose(camera.camera_to_world, opengl_pose(2) @ OPENGL_FLIP)
    xyz, rgb = load_points(scene)
    assert xyz.shape == (4, 3) and rgb[0, 0] == 7
    image = scene.frames[0].load_image()
    assert image.shape == (HEIGHT, WIDTH, 3)
    np.testing.assert_array_equal(image, np.asarray(Image.open(tmp_path / "images" / "frame_00000.png")))


def test_opengl_to_opencv_projects_a_known_point(tmp_path):
    meta = nerfstudio_scene(tmp_path, count=3)
    scene = load_scene(save(tmp_path, meta))
    point = np.array([0.3, -0.2, 0.4, 1.0])
    for frame in scene.frames:
        # OpenGL projection: camera looks along -z, image y grows downward while camera y points up
        gl = np.linalg.inv(opengl_pose(frame.index)) @ point
        expected = (
            INTRINSICS["cx"] + INTRINSICS["fl_x"] * gl[0] / -gl[2],
            INTRINSICS["cy"] - INTRINSICS["fl_y"] * gl[1] / -gl[2],
        )
        camera = frame.camera
        cv = camera.world_to_camera @ point
        assert cv[2] > 0  # in front of the camera in OpenCV
        pixel = camera.intrinsics @ cv[:3]
        np.testing.assert_allclose(pixel[:2] / pixel[2], expected, atol=1e-9)


def write_blender_scene(root: Path) -> None:
    """A NeRF-synthetic (Blender) layout: transforms_train.json and transforms_test.json with
    camera_angle_x, file paths without extension, RGBA PNGs whose left half is transparent."""
    for split, count in (("train", 3), ("test", 2)):
        frames = []
        for index in range(count):
            rgba = np.zeros((HEIGHT, WIDTH, 4), np.uint8)
            rgba[:, :, :3] = (10 * index, 100, 200)
            rgba[:, WIDTH // 2 :, 3] = 255  # right half opaque; the left half transparent, its colour hidden
            (root / split).mkdir(parents=True, exist_ok=True)
            Image.fromarray(rgba, "RGBA").save(root / split / f"r_{index}.png")
            pose = opengl_pose(index + (3 if split == "test" else 0))
            frames.append({"file_path": f"./{split}/r_{index}", "rotation": 0.1, "transform_matrix": pose.tolist()})
        (root / f"transforms_{split}.json").write_text(json.dumps({"camera_angle_x": 0.6911, "frames": frames}))


def test_blender_scene_as_shipped(tmp_path):
    write_blender_scene(tmp_path)
    scene = load_scene(tmp_path)
    assert [(frame.name, frame.split) for frame in scene.frames] == [
        ("test/r_0", "test"),
        ("test/r_1", "test"),
        ("train/r_0", "train"),
        ("train/r_1", "train"),
        ("train/r_2", "train"),
    ]
    assert scene.frames[2].image_path == tmp_path / "train" / "r_0.png"
    camera = scene.frames[0].camera
    focal = 0.5 * WIDTH / np.tan(0.5 * 0.6911)  # nerfstudio's Blender parser: fx = fy from camera_angle_x
    assert (camera.width, camera.height) == (WIDTH, HEIGHT)  # no w, h: read from the image
    np.testing.assert_allclose([camera.fx, camera.fy, camera.cx, camera.cy], [focal, focal, WIDTH / 2, HEIGHT / 2])
    image = scene.frames[3].load_image()  # train/r_1
    assert image.shape == (HEIGHT, WIDTH, 3)
    assert (image[:, : WIDTH // 2] == 255).all()  # transparent pixels show the white background
    assert (image[:, WIDTH // 2 :] == (10, 100, 200)).all()  # opaque pixels keep their colour


def test_instant_ngp_fields_of_view_and_aabb_scale(tmp_path):
    meta = nerfstudio_scene(tmp_path, count=2)
    for key in ("fl_x", "fl_y", "cx", "cy"):
        del meta[key]
    meta.update(camera_angle_x=0.8, camera_angle_y=0.7, aabb_scale=4)
    camera = load_scene(save(tmp_path, meta)).frames[0].camera
    expected = [0.5 * WIDTH / np.tan(0.4), 0.5 * HEIGHT / np.tan(0.35), WIDTH / 2, HEIGHT / 2]
    np.testing.assert_allclose([camera.fx, camera.fy, camera.cx, camera.cy], expected)
    # instant-ngp's box: side aabb_scale around (0.5, 0.5, 0.5) after p * 0.33 + 0.5, so +-(2 / 0.33) in the world
    np.testing.assert_allclose(load_scene(tmp_path).bounds, [[-2 / 0.33] * 3, [2 / 0.33] * 3])
    meta.update(scale=0.5, offset=[0.5, 0.0, 0.5])
    np.testing.assert_allclose(load_scene(save(tmp_path, meta)).bounds, [[-4, -3, -4], [4, 5, 4]])
    assert load_scene(save(tmp_path, nerfstudio_scene(tmp_path))).bounds is None


def test_per_frame_intrinsics(tmp_path):
    meta = nerfstudio_scene(tmp_path, count=2)
    for key in INTRINSICS:
        del meta[key]
    for position, frame in enumerate(meta["frames"]):
        frame.update(INTRINSICS, fl_x=10.0 + position)
    scene = load_scene(save(tmp_path, meta))
    assert sorted(frame.camera.fx for frame in scene.frames) == [10.0, 11.0]
    del meta["frames"][0]["fl_y"]  # fl_y defaults to fl_x, as in instant-ngp's transforms
    save(tmp_path, meta)
    assert sorted((frame.camera.fx, frame.camera.fy) for frame in load_scene(tmp_path).frames)[0] == (10.0, 10.0)
    del meta["frames"][0]["fl_x"]
    save(tmp_path, meta)
    with pytest.raises(DataError, match=r"transforms\.json.*no focal length; add fl_x .* or camera_angle_x"):
        load_scene(tmp_path)


def test_split_lists(tmp_path):
    meta = nerfstudio_scene(tmp_path, count=4)
    meta["train_filenames"] = ["images/frame_00000.png", "images/frame_00002.png"]
    meta["val_filenames"] = ["images/frame_00001.png"]
    meta["test_filenames"] = ["./images/frame_00003.png"]
    scene = load_scene(save(tmp_path, meta))
    assert [frame.split for frame in scene.frames] == ["train", "test", "train", "test"]
    assert [frame.name for frame in scene.split("test")] == ["frame_00001", "frame_00003"]

    del meta["test_filenames"]
    save(tmp_path, meta)
    with pytest.raises(DataError, match=r"transforms\.json.*frame_00003.*in none of"):
        load_scene(tmp_path)
    meta["test_filenames"] = ["images/frame_00003.png", "images/frame_00000.png"]
    save(tmp_path, meta)
    with pytest.raises(DataError, match="both train and test"):
        load_scene(tmp_path)
    meta["test_filenames"] = ["images/frame_00003.png", "images/nope.png"]
    save(tmp_path, meta)
    with pytest.raises(DataError, match=r"transforms\.json.*nope\.png"):
        load_scene(tmp_path)


def test_downscale_scales_cameras_and_images(tmp_path):
    save(tmp_path, nerfstudio_scene(tmp_path, count=1))
    frame = load_scene(tmp_path, downscale=2).frames[0]
    camera = frame.camera
    assert (camera.width, camera.height) == (WIDTH // 2, HEIGHT // 2)
    assert (camera.fx, camera.cx) == (10.0, 3.75)
    assert frame.load_image().shape == (HEIGHT // 2, WIDTH // 2, 3)
    for bad in (0, 1.5, -2):
        with pytest.raises(ConfigError, match="downscale"):
            load_scene(tmp_path, downscale=bad)


@pytest.mark.parametrize(
    "distortion, message",
    [
        ({"k4": 0.2}, r"k4 = 0\.2; like nerfstudio, cclgs undistorts .* k1, k2, k3, p1, p2 only: undistort"),
        ({"distortion_params": [0.1, 0.0, 0.0]}, r"invalid distortion parameters; give numbers k1 k2 k3 k4 p1 p2"),
        ({"k1": "strong"}, "invalid distortion parameters"),
    ],
)
def test_unsupported_distortion_is_refused_with_a_fix(tmp_path, distortion, message):
    meta = nerfstudio_scene(tmp_path, count=1)
    meta.update(distortion)
    with pytest.raises(DataError, match=r"transforms\.json.*" + message):
        load_scene(save(tmp_path, meta))


def test_undistortion_puts_a_known_point_where_opencv_does(tmp_path):
    """A bright dot drawn where OpenCV projects a 3D point through the distorted lens lands, after
    cclgs undistorts the photo on load, where the frame's pinhole camera projects that point."""
    import cv2

    width, height = 96, 64
    lens = {"k1": 0.3, "k2": -0.1, "k3": 0.01, "p1": 0.004, "p2": -0.003}
    intrinsics = {"fl_x": 80.0, "fl_y": 78.0, "cx": 47.0, "cy": 33.5, "w": width, "h": height}
    pose = opengl_pose(0)
    point_camera = np.array([0.45, -0.3, 1.0]) * 2.0  # OpenCV camera frame, near the upper-right corner
    source_matrix = np.array([[80.0, 0, 47.0 - 0.5], [0, 78.0, 33.5 - 0.5], [0, 0, 1]])  # OpenCV pixel centres
    coefficients = np.array([lens[key] for key in ("k1", "k2", "p1", "p2", "k3")])
    distorted, _ = cv2.projectPoints(point_camera[None], np.zeros(3), np.zeros(3), source_matrix, coefficients)
    dot = distorted.reshape(2) + 0.5  # cclgs pixel coordinates in the photo
    ys, xs = np.mgrid[0:height, 0:width] + 0.5
    blob = 255 * np.exp(-((xs - dot[0]) ** 2 + (ys - dot[1]) ** 2) / (2 * 1.2**2))
    Image.fromarray(np.repeat(blob[..., None], 3, axis=2).astype(np.uint8)).save(tmp_path / "photo.png")
    frame = {"file_path": "photo.png", "transform_matrix": pose.tolist()}
    save(tmp_path, {**intrinsics, **lens, "camera_model": "OPENCV", "frames": [frame]})

    loaded = load_scene(tmp_path).frames[0]
    camera = loaded.camera
    assert (camera.width, camera.height) != (width, height) or (camera.fx, camera.fy) != (80.0, 78.0)
    world = loaded.distortion.source.camera_to_world @ np.append(point_camera, 1.0)
    projected = camera.intrinsics @ (camera.world_to_camera @ world)[:3]
    expected = projected[:2] / projected[2]  # where the pinhole camera sees the point
    image = loaded.load_image()[..., 0].astype(np.float64)
    assert image.shape == (camera.height, camera.width)
    weights = np.where(image > 0.3 * image.max(), image, 0.0)
    ys, xs = np.mgrid[0 : camera.height, 0 : camera.width] + 0.5
    centroid = np.array([(weights * xs).sum(), (weights * ys).sum()]) / weights.sum()
    assert np.abs(centroid - expected).max() < 0.2, (centroid, expected)
    # and OpenCV's own point undistortion agrees with the camera cclgs reports
    matrix, (crop_x, crop_y, _, _) = cv2.getOptimalNewCameraMatrix(source_matrix, coefficients, (width, height), 0)
    undistorted = cv2.undistortPoints(distorted, source_matrix, coefficients, P=matrix).reshape(2)
    np.testing.assert_allclose(undistorted - (crop_x, crop_y) + 0.5, expected, atol=1e-3)  # iterative inverse


def test_zero_distortion_and_pinhole_models_are_accepted(tmp_path):
    meta = nerfstudio_scene(tmp_path, count=1, k1=0.0, k2=0, k3=0.0, k4=0.0, p1=0.0, p2=0.0, camera_model="PINHOLE")
    meta["frames"][0]["distortion_params"] = [0, 0, 0, 0, 0, 0]
    assert len(load_scene(save(tmp_path, meta)).frames) == 1
    meta["camera_model"] = "OPENCV_FISHEYE"
    with pytest.raises(DataError, match=r"transforms\.json.*OPENCV_FISHEYE.*undistort"):
        load_scene(save(tmp_path, meta))


def break_missing_image(meta):
    meta["frames"][0]["file_path"] = "images/gone.png"


def break_nan_matrix(meta):
    meta["frames"][1]["transform_matrix"][0][3] = float("nan")


def break_inf_matrix(meta):
    meta["frames"][1]["transform_matrix"][2][1] = float("inf")


def break_scaled_matrix(meta):
    meta["frames"][0]["transform_matrix"] = (np.diag([2.0, 2.0, 2.0, 1.0])).tolist()


def break_matrix_shape(meta):
    meta["frames"][0]["transform_matrix"] = [[1, 0, 0], [0, 1, 0]]


def break_no_frames(meta):
    meta["frames"] = []


def break_no_file_path(meta):
    del meta["frames"][2]["file_path"]


def break_no_transform(meta):
    del meta["frames"][0]["transform_matrix"]


def break_no_focal_length(meta):
    del meta["fl_x"]


def break_size(meta):
    meta["w"], meta["h"] = 2 * WIDTH, 2 * HEIGHT


def break_duplicate(meta):
    meta["frames"].append(dict(meta["frames"][0]))


def break_same_stem(meta):
    write_image(Path(meta["__root"]) / "images" / "frame_00001.jpg")
    meta["frames"].append({"file_path": "images/frame_00001.jpg", "transform_matrix": opengl_pose(1).tolist()})


def break_points_path(meta):
    meta["ply_file_path"] = "missing_points.ply"


def break_gaussians_path(meta):
    meta["gaussians_file_path"] = "missing_gaussians.ply"


def break_ground_truth_kind(meta):
    meta["frames"][0]["ground_truth"] = {"semantics": "images/frame_00002.png"}


def break_ground_truth_file(meta):
    meta["frames"][0]["ground_truth"] = {"instance": "gt/absent.png"}


def break_applied_scale(meta):
    write_points(Path(meta["__root"]) / "pc.ply", np.zeros((1, 3), np.float32), np.zeros((1, 3), np.uint8))
    meta["ply_file_path"] = "pc.ply"
    meta["applied_scale"] = 0.5


@pytest.mark.parametrize(
    "breaker, message",
    [
        (break_missing_image, r"gone\.png does not exist"),
        (break_nan_matrix, "NaN or inf"),
        (break_inf_matrix, "NaN or inf"),
        (break_scaled_matrix, "not a rigid transform"),
        (break_matrix_shape, "expected 4x4"),
        (break_no_frames, "non-empty 'frames'"),
        (break_no_file_path, r"frames\[\d\] has no 'file_path'"),
        (break_no_transform, "has no 'transform_matrix'"),
        (break_no_focal_length, "no focal length; add fl_x"),
        (break_size, r"16x12 but its intrinsics say 32x24"),
        (break_duplicate, "more than one frame"),
        (break_same_stem, "several images are named 'frame_00001'"),
        (break_points_path, r"ply_file_path points to .*missing_points\.ply"),
        (break_gaussians_path, r"gaussians_file_path points to .*missing_gaussians\.ply"),
        (break_ground_truth_kind, "ground_truth kind 'semantics'"),
        (break_ground_truth_file, r"absent\.png does not exist"),
        (break_applied_scale, "applied_scale"),
    ],
)
def test_nerfstudio_validation_errors_name_the_file(tmp_path, breaker, message):
    meta = nerfstudio_scene(tmp_path, count=3)
    meta["__root"] = str(tmp_path)
    breaker(meta)
    source = save(tmp_path, meta)
    with pytest.raises(DataError, match=message) as error:
        load_scene(tmp_path)
    assert str(source) in str(error.value)


def test_bad_json_and_classes(tmp_path):
    (tmp_path / "transforms.json").write_text("{not json")
    with pytest.raises(DataError, match=r"transforms\.json: not valid JSON"):
        load_scene(tmp_path)
    save(tmp_path, nerfstudio_scene(tmp_path, count=1))
    (tmp_path / "classes.json").write_text(json.dumps({"classes": [{"id": 0, "name": "a"}, {"id": 2, "name": "b"}]}))
    with pytest.raises(DataError, match=r"classes\.json: class ids are \[0, 2\]"):
        load_scene(tmp_path)
    (tmp_path / "classes.json").write_text(json.dumps([{"id": 0}]))
    with pytest.raises(DataError, match=r"classes\.json"):
        load_scene(tmp_path)


def test_load_scene_explains_what_it_looked_for(tmp_path):
    with pytest.raises(DataError, match=r"transforms\.json.*sparse/0"):
        load_scene(tmp_path)
    with pytest.raises(DataError, match="no such scene"):
        load_scene(tmp_path / "nowhere")


def test_frames_in_subfolders_get_unique_names(tmp_path):
    meta = nerfstudio_scene(tmp_path, count=1)
    for camera in ("left", "right"):
        write_image(tmp_path / "images" / camera / "0001.png")
        meta["frames"].append({"file_path": f"images/{camera}/0001.png", "transform_matrix": opengl_pose(1).tolist()})
    del meta["frames"][0]
    scene = load_scene(save(tmp_path, meta))
    assert [frame.name for frame in scene.frames] == ["left/0001", "right/0001"]


# --------------------------------------------------------------------------- COLMAP


def write_colmap(
    root: Path, ext: str = ".txt", model: str = "PINHOLE", params=None, points: int = 2, count: int = 3
) -> list:
    """A tiny COLMAP model written with nerfstudio's writer; returns the (4, 4) world-to-camera matrices."""
    from nerfstudio.data.utils import colmap_parsing_utils as colmap

    params = params if params is not None else [20.0, 21.0, 7.5, 6.0]
    cameras = {1: colmap.Camera(id=1, model=model, width=WIDTH, height=HEIGHT, params=np.array(params, dtype=float))}
    images, world_to_cameras = {}, []
    for index in range(count):
        world_to_camera = np.linalg.inv(opengl_pose(index) @ OPENGL_FLIP)
        world_to_cameras.append(world_to_camera)
        images[index + 1] = colmap.Image(
            id=index + 1,
            qvec=colmap.rotmat2qvec(world_to_camera[:3, :3]),
            tvec=world_to_camera[:3, 3],
            camera_id=1,
            name=f"frame_{index:05d}.jpg",
            xys=np.zeros((0, 2)),
            point3D_ids=np.zeros(0, dtype=int),
        )
        write_image(root / "images" / f"frame_{index:05d}.jpg", value=index)
    points3d = {
        key + 1: colmap.Point3D(
            id=key + 1,
            xyz=np.array([key, 0.5, -1.0]),
            rgb=np.array([10, 20, 30 + key]),
            error=0.1,
            image_ids=np.array([1]),
            point2D_idxs=np.array([0]),
        )
        for key in range(points)
    }
    model_dir = root / "sparse" / "0"
    model_dir.mkdir(parents=True)
    colmap.write_model(cameras, images, points3d, str(model_dir), ext=ext)
    return world_to_cameras


@pytest.mark.parametrize("ext", [".txt", ".bin"])
def test_colmap_reads_poses_intrinsics_and_points(tmp_path, ext):
    world_to_cameras = write_colmap(tmp_path, ext=ext)
    scene = load_scene(tmp_path)
    assert [frame.name for frame in scene.frames] == ["frame_00000", "frame_00001", "frame_00002"]
    for frame, world_to_camera in zip(scene.frames, world_to_cameras):
        np.testing.assert_allclose(frame.camera.world_to_camera, world_to_camera, atol=1e-9)
        assert (frame.camera.fx, frame.camera.fy, frame.camera.cx, frame.camera.cy) == (20.0, 21.0, 7.5, 6.0)
        assert frame.image_path == tmp_path / "images" / f"{frame.name}.jpg"
    assert scene.points_path == tmp_path / "sparse" / "0" / f"points3D{ext}"
    xyz, rgb = load_points(scene)
    np.testing.assert_allclose(xyz, [[0, 0.5, -1], [1, 0.5, -1]])
    np.testing.assert_array_equal(rgb, [[10, 20, 30], [10, 20, 31]])


def test_colmap_simple_pinhole_and_zero_distortion_models(tmp_path):
    write_colmap(tmp_path / "a", model="SIMPLE_PINHOLE", params=[20.0, 7.5, 6.0])
    camera = load_colmap(tmp_path / "a").frames[0].camera
    assert (camera.fx, camera.fy, camera.cx, camera.cy) == (20.0, 20.0, 7.5, 6.0)
    write_colmap(tmp_path / "b", model="OPENCV", params=[20.0, 21.0, 7.5, 6.0, 0, 0, 0, 0])
    assert load_colmap(tmp_path / "b").frames[0].camera.fy == 21.0


@pytest.mark.parametrize(
    "model, params",
    [
        ("OPENCV", [20.0, 21.0, 7.5, 6.0, 0.1, 0, 0, 0]),
        ("SIMPLE_RADIAL", [20.0, 7.5, 6.0, 0.02]),
        ("OPENCV_FISHEYE", [20, 21, 7.5, 6, 0, 0, 0, 0]),
    ],
)
def test_colmap_distortion_is_refused_with_a_fix(tmp_path, model, params):
    write_colmap(tmp_path, model=model, params=params)
    with pytest.raises(DataError, match=rf"cameras\.txt: camera 1 .*{model}.*image_undistorter"):
        load_scene(tmp_path)


def test_colmap_without_points(tmp_path):
    write_colmap(tmp_path, points=0)
    scene = load_scene(tmp_path)
    assert scene.points_path is None
    with pytest.raises(DataError, match="no sparse points"):
        load_points(scene)
    (tmp_path / "sparse" / "0" / "points3D.txt").unlink()
    assert load_scene(tmp_path).points_path is None


def test_colmap_validation_errors(tmp_path):
    write_colmap(tmp_path, ext=".bin")
    model = tmp_path / "sparse" / "0"
    (tmp_path / "images" / "frame_00001.jpg").unlink()
    with pytest.raises(DataError, match=r"images\.bin: image .*frame_00001\.jpg does not exist"):
        load_scene(tmp_path)
    write_image(tmp_path / "images" / "frame_00001.jpg", size=(WIDTH + 1, HEIGHT))
    with pytest.raises(DataError, match=r"images\.bin: image .*frame_00001\.jpg is 17x12"):
        load_scene(tmp_path)
    (model / "images.bin").write_bytes((model / "images.bin").read_bytes()[:50])
    with pytest.raises(DataError, match=r"images\.bin: cannot parse"):
        load_scene(tmp_path)
    (model / "images.bin").unlink()
    with pytest.raises(DataError, match=r"cameras\.bin but no images\.bin"):
        load_scene(tmp_path)


def test_colmap_nan_pose(tmp_path):
    write_colmap(tmp_path)
    images_txt = tmp_path / "sparse" / "0" / "images.txt"
    lines = images_txt.read_text().splitlines()
    first = next(index for index, line in enumerate(lines) if line and not line.startswith("#"))
    fields = lines[first].split()
    fields[5] = "nan"
    lines[first] = " ".join(fields)
    images_txt.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"images\.txt: image frame_00000\.jpg has a NaN"):
        load_scene(tmp_path)


# --------------------------------------------------------------------------- LERF-OVS labels


@pytest.mark.skipif(not LABELS_DIR.is_dir(), reason=f"real LERF-OVS label files not found in {LABELS_DIR}")
def test_real_lerf_ovs_labels():
    import cv2

    raw = (LABELS_DIR / "frame_00089.json").read_bytes()
    assert b"\r\n" in raw  # CRLF line endings
    content = json.loads(raw)
    assert {item["iscrowd"] for item in json.loads((LABELS_DIR / "frame_00066.json").read_bytes())["objects"]} == {
        0,
        False,
    }
    assert all(item["segmentation"][0] != item["segmentation"][-1] for item in content["objects"])  # open polygons
    assert all(isinstance(value, float) for value in content["objects"][0]["segmentation"][0])

    labels = read_ovs_labels(LABELS_DIR / "frame_00089.json")
    assert (labels.width, labels.height, labels.image_name) == (985, 725, "frame_00089.jpg")
    assert set(labels.categories) == {"knife", "ketchup", "cabinet"}
    knife = labels.categories["knife"]
    assert knife.mask.shape == (725, 985) and knife.mask.dtype == bool
    assert knife.boxes.shape == (5, 4)
    union = np.zeros((725, 985), bool)
    for item in content["objects"]:
        if item["category"] == "knife":
            single = np.zeros((725, 985), np.uint8)
            cv2.fillPoly(single, [np.asarray(item["segmentation"]).astype(np.int32)], 1)
            union |= single.astype(bool)
            assert np.any(np.all(knife.boxes == item["bbox"], axis=1))
            mask_in_box = single[
                int(item["bbox"][1]) : int(item["bbox"][3]) + 1, int(item["bbox"][0]) : int(item["bbox"][2]) + 1
            ]
            assert mask_in_box.sum() == single.sum()
    np.testing.assert_array_equal(knife.mask, union)
    annotated_area = sum(item["area"] for item in content["objects"] if item["category"] == "knife")
    assert 0.95 < knife.mask.sum() / annotated_area < 1.1  # rasterisation includes the boundary

    half = read_ovs_labels(LABELS_DIR / "frame_00066.json", size=(492, 362))
    full = read_ovs_labels(LABELS_DIR / "frame_00066.json")
    assert half.categories["pot"].mask.shape == (362, 492)
    np.testing.assert_allclose(
        half.categories["pot"].boxes, full.categories["pot"].boxes * np.tile([492 / 985, 362 / 725], 2)
    )
    ratio = half.categories["refrigerator"].mask.sum() / full.categories["refrigerator"].mask.sum()
    assert abs(ratio - (492 * 362) / (985 * 725)) < 0.02


def label_fixture(path: Path) -> None:
    """A label file in the LERF-OVS/ISAT style: CRLF, iscrowd 0 and false, float coords, open polygons, a repeat."""
    objects = [
        {
            "category": "mug",
            "group": 1,
            "segmentation": [[2.0, 3.0], [7.0, 3.0], [7.0, 8.0], [2.0, 8.0]],
            "bbox": [2.0, 3.0, 7.0, 8.0],
            "area": 25.0,
            "layer": 1.0,
            "iscrowd": 0,
            "note": "",
        },
        {
            "category": "plate",
            "group": 2,
            "segmentation": [[10.6, 1.2], [14.9, 1.7], [14.2, 4.9], [10.1, 4.4]],
            "bbox": [10.1, 1.2, 14.9, 4.9],
            "area": 16.0,
            "layer": 2.0,
            "iscrowd": False,
            "note": "",
        },
        {
            "category": "mug",
            "group": 3,
            "segmentation": [[5.0, 6.0], [9.0, 6.0], [9.0, 10.0], [5.0, 10.0]],
            "bbox": [5.0, 6.0, 9.0, 10.0],
            "area": 16.0,
            "layer": 3.0,
            "iscrowd": False,
            "note": "",
        },
        {
            "category": "Mug",
            "group": 4,
            "segmentation": [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]],
            "bbox": [0.0, 0.0, 1.0, 1.0],
            "area": 1.0,
            "layer": 4.0,
            "iscrowd": 0,
            "note": "",
        },
    ]
    content = {
        "info": {
            "description": "ISAT",
            "name": "frame_00002.jpg",
            "width": WIDTH,
            "height": HEIGHT,
            "depth": 3,
            "note": "",
        },
        "objects": objects,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(json.dumps(content, indent=4).replace("\n", "\r\n").encode())


def test_label_fixture(tmp_path):
    path = tmp_path / "frame_00002.json"
    label_fixture(path)
    labels = read_ovs_labels(path)
    assert set(labels.categories) == {"mug", "plate", "Mug"}  # case-sensitive
    expected = np.zeros((HEIGHT, WIDTH), bool)
    expected[3:9, 2:8] = True  # closed polygon rasterised with its boundary
    expected[6:11, 5:10] = True  # the second mug, OR-ed
    np.testing.assert_array_equal(labels.categories["mug"].mask, expected)
    np.testing.assert_array_equal(labels.categories["mug"].boxes, [[2, 3, 7, 8], [5, 6, 9, 10]])
    plate = labels.categories["plate"].mask
    assert plate[1:5, 10:15].sum() == plate.sum() > 10  # float coordinates truncated to the pixel grid
    scaled = read_ovs_labels(path, size=(2 * WIDTH, 2 * HEIGHT))
    assert scaled.categories["mug"].mask[6:17, 4:15].all()
    np.testing.assert_allclose(scaled.categories["plate"].boxes, [[20.2, 2.4, 29.8, 9.8]])


def test_label_writer_round_trip(tmp_path):
    path = tmp_path / "frame_00007.json"
    square = np.array([[1.0, 1.0], [4.0, 1.0], [4.0, 4.0], [1.0, 4.0]])
    write_ovs_labels(
        path, "frame_00007.png", WIDTH, HEIGHT, [("cup", square), ("cup", square + 6), ("bowl", square + [8, 0])]
    )
    labels = read_ovs_labels(path)
    assert labels.image_name == "frame_00007.png" and set(labels.categories) == {"cup", "bowl"}
    assert labels.categories["cup"].mask.sum() == 32
    np.testing.assert_array_equal(labels.categories["bowl"].boxes, [[9, 1, 12, 4]])
    assert json.loads(path.read_text())["objects"][0]["area"] == 9.0


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda c: c["objects"][0].pop("category"), r"objects\[0\] needs 'category'"),
        (
            lambda c: c["objects"][1].update(segmentation=[1, 2, 3, 4]),
            r"objects\[1\]\.segmentation must be a list of \[x, y\]",
        ),
        (lambda c: c["objects"][2].update(bbox=[0, 0, 1]), r"objects\[2\]\.bbox must be \[x1, y1, x2, y2\]"),
        (lambda c: c["info"].pop("width"), "integer 'width'"),
        (lambda c: c.pop("objects"), "'info' and 'objects'"),
    ],
)
def test_malformed_labels(tmp_path, edit, message):
    path = tmp_path / "frame_00002.json"
    label_fixture(path)
    content = json.loads(path.read_bytes())
    edit(content)
    path.write_text(json.dumps(content))
    with pytest.raises(DataError, match=message) as error:
        read_ovs_labels(path)
    assert str(path) in str(error.value)


def test_lerf_ovs_layout(tmp_path):
    scene_dir = tmp_path / "lerf_ovs" / "kitchen"
    write_colmap(scene_dir, count=4)
    label_fixture(tmp_path / "lerf_ovs" / "label" / "kitchen" / "frame_00002.json")
    scene = load_scene(scene_dir)
    assert [frame.split for frame in scene.frames] == ["train", "train", "test", "train"]
    assert scene.frames[2].ground_truth == {"objects": tmp_path / "lerf_ovs" / "label" / "kitchen" / "frame_00002.json"}
    other = tmp_path / "labels_elsewhere"
    label_fixture(other / "frame_00009.json")
    with pytest.raises(DataError, match=r"frame_00009\.json: labels a frame 'frame_00009'"):
        load_lerf_ovs(scene_dir, label_dir=other)
    with pytest.raises(DataError, match="label folder not found"):
        load_lerf_ovs(scene_dir, label_dir=tmp_path / "none")


# --------------------------------------------------------------------------- splatfacto


def splatfacto_state(count: int, degree: int, seed: int = 0) -> dict:
    generator = torch.Generator().manual_seed(seed)
    rest = (degree + 1) ** 2 - 1
    gauss = {
        "means": torch.randn(count, 3, generator=generator),
        "scales": torch.randn(count, 3, generator=generator) - 2,
        "quats": torch.randn(count, 4, generator=generator),
        "features_dc": torch.randn(count, 3, generator=generator),
        "features_rest": torch.randn(count, rest, 3, generator=generator),
        "opacities": torch.randn(count, 1, generator=generator),
    }
    return gauss


def save_checkpoint(run: Path, gauss: dict, step: int, prefix: str = "_model.gauss_params.") -> Path:
    """A checkpoint in nerfstudio 1.1.5's layout (trainer.save_checkpoint), optimizer state included."""
    parameter = torch.nn.Parameter(gauss["means"].clone())
    optimizer = torch.optim.Adam([{"params": [parameter], "lr": 1.6e-4, "name": "means"}], eps=1e-15)
    parameter.grad = torch.ones_like(parameter)
    optimizer.step()
    pipeline = {f"{prefix}{name}": value for name, value in gauss.items()}
    pipeline["_model.camera_optimizer.pose_adjustment"] = torch.zeros(4, 6)
    pipeline["datamanager.train_camera_optimizer.pose_adjustment"] = torch.zeros(4, 6)
    checkpoint = {
        "step": step,
        "pipeline": pipeline,
        "optimizers": {"means": optimizer.state_dict()},
        "schedulers": {
            "means": {"base_lrs": [1.6e-4], "last_epoch": step, "_last_lr": [np.float64(1e-5)], "lr_lambdas": [None]}
        },
        "scalers": {},
    }
    path = run / "nerfstudio_models" / f"step-{step:09d}.ckpt"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, path)
    return path


def test_splatfacto_checkpoint_loads_latest_step(tmp_path):
    old, new = splatfacto_state(10, 3, seed=1), splatfacto_state(12, 3, seed=2)
    save_checkpoint(tmp_path, old, 1000)
    save_checkpoint(tmp_path, new, 29999)
    for source in (tmp_path, tmp_path / "nerfstudio_models", tmp_path / "nerfstudio_models" / "step-000029999.ckpt"):
        gaussians = load_splatfacto(source)
        assert len(gaussians) == 12 and gaussians.sh_degree == 3
        assert torch.equal(gaussians.means, new["means"]) and torch.equal(gaussians.log_scales, new["scales"])
        assert torch.equal(gaussians.quats, new["quats"])
        assert torch.equal(gaussians.opacity_logits, new["opacities"][:, 0])
        assert torch.equal(gaussians.sh[:, 0], new["features_dc"]) and torch.equal(
            gaussians.sh[:, 1:], new["features_rest"]
        )
        assert gaussians.extras == {}
    assert len(load_splatfacto(tmp_path / "nerfstudio_models" / "step-000001000.ckpt")) == 10


def test_splatfacto_state_dict_of_the_real_model(tmp_path, monkeypatch):
    """Key names and shapes from nerfstudio's own SplatfactoModel (its LPIPS metric stubbed: no weights here)."""
    monkeypatch.setenv("TORCHDYNAMO_DISABLE", "1")
    lpip = pytest.importorskip("torchmetrics.image.lpip")
    splatfacto = pytest.importorskip("nerfstudio.models.splatfacto")
    from nerfstudio.data.scene_box import SceneBox

    monkeypatch.setattr(lpip, "LearnedPerceptualImagePatchSimilarity", lambda **options: torch.nn.Identity())
    model = splatfacto.SplatfactoModelConfig(num_random=9).setup(
        scene_box=SceneBox(aabb=torch.tensor([[-1.0, -1, -1], [1, 1, 1]])), num_train_data=2, metadata={}
    )
    state = {f"_model.{key}": value for key, value in model.state_dict().items()}
    path = tmp_path / "nerfstudio_models" / "step-000000010.ckpt"
    path.parent.mkdir()
    torch.save({"step": 10, "pipeline": state, "optimizers": {}, "schedulers": {}, "scalers": {}}, path)
    gaussians = load_splatfacto(tmp_path)
    assert len(gaussians) == 9 and gaussians.sh_degree == model.config.sh_degree
    assert torch.equal(gaussians.means, model.means.detach()) and torch.equal(gaussians.quats, model.quats.detach())
    assert torch.equal(gaussians.sh[:, 0], model.shs_0.detach()) and torch.equal(
        gaussians.sh[:, 1:], model.shs_rest.detach()
    )
    assert torch.equal(gaussians.opacity_logits, model.opacities.detach()[:, 0])
    assert torch.equal(gaussians.log_scales, model.scales.detach())


def test_splatfacto_degree_zero_logit_colours_and_extras(tmp_path):
    gauss = splatfacto_state(6, 0)
    gauss["semantic"] = torch.randn(6, 8)
    save_checkpoint(tmp_path, gauss, 100)
    gaussians = load_splatfacto(tmp_path)
    camera = Camera(np.eye(4), 1, 1, 0, 0, 2, 2)
    torch.testing.assert_close(gaussians.colors(camera), torch.sigmoid(gauss["features_dc"]))
    assert torch.equal(gaussians.extras["semantic"], gauss["semantic"])


def test_splatfacto_old_and_ddp_key_layouts(tmp_path):
    gauss = splatfacto_state(5, 1)
    save_checkpoint(tmp_path / "old", gauss, 5, prefix="_model.")
    save_checkpoint(tmp_path / "ddp", gauss, 5, prefix="module._model.module.gauss_params.")
    for run in ("old", "ddp"):
        assert torch.equal(load_splatfacto(tmp_path / run).means, gauss["means"])


def test_splatfacto_errors(tmp_path):
    with pytest.raises(DataError, match=r"no nerfstudio checkpoint"):
        load_splatfacto(tmp_path)
    gauss = splatfacto_state(5, 1)
    del gauss["quats"]
    path = save_checkpoint(tmp_path, gauss, 3)
    with pytest.raises(DataError, match=r"step-000000003\.ckpt.*gauss_params\.quats"):
        load_splatfacto(tmp_path)
    path.write_bytes(b"garbage")
    with pytest.raises(DataError, match=r"step-000000003\.ckpt: cannot load"):
        load_splatfacto(tmp_path)
    save_checkpoint(tmp_path, splatfacto_state(5, 1), 3)
    with pytest.raises(DataError, match=r"dataparser_transforms\.json: file not found"):
        load_splatfacto(tmp_path, frame="data")


def quat_to_matrix(quats: torch.Tensor) -> torch.Tensor:
    """(N, 3, 3) rotation matrices of (N, 4) wxyz quaternions (normalised here)."""
    w, x, y, z = (quats / quats.norm(dim=-1, keepdim=True)).double().unbind(-1)
    return torch.stack(
        [
            1 - 2 * (y * y + z * z),
            2 * (x * y - w * z),
            2 * (x * z + w * y),
            2 * (x * y + w * z),
            1 - 2 * (x * x + z * z),
            2 * (y * z - w * x),
            2 * (x * z - w * y),
            2 * (y * z + w * x),
            1 - 2 * (x * x + y * y),
        ],
        dim=-1,
    ).reshape(-1, 3, 3)


def covariances(gaussians: Gaussians) -> torch.Tensor:
    """(N, 3, 3) float64 covariance matrices."""
    rotations = quat_to_matrix(gaussians.quats)
    variances = torch.exp(2 * gaussians.log_scales.double())
    return rotations @ torch.diag_embed(variances) @ rotations.transpose(1, 2)


def camera_at(center: np.ndarray) -> Camera:
    pose = np.eye(4)
    pose[:3, 3] = center
    return Camera(pose, 1, 1, 0, 0, 2, 2)


def test_splatfacto_maps_back_to_the_data_frame(tmp_path):
    gauss = splatfacto_state(40, 3, seed=3)
    save_checkpoint(tmp_path, gauss, 7)
    ns_rotation = rotation("z", 0.7) @ rotation("x", -1.1)
    ns_translation, ns_scale = np.array([0.3, -1.2, 2.0]), 0.25
    transform = np.hstack([ns_rotation, ns_translation[:, None]])
    (tmp_path / "dataparser_transforms.json").write_text(
        json.dumps({"transform": transform.tolist(), "scale": ns_scale})
    )
    ns = load_splatfacto(tmp_path)
    data = load_splatfacto(tmp_path, frame="data")

    # p_ns = s (R p + t)
    means = data.means.double().numpy()
    np.testing.assert_allclose(ns_scale * (means @ ns_rotation.T + ns_translation), ns.means.numpy(), atol=1e-5)
    linear = torch.as_tensor(ns_scale * ns_rotation)
    torch.testing.assert_close(linear @ covariances(data) @ linear.T, covariances(ns), atol=1e-6, rtol=1e-4)
    torch.testing.assert_close(data.opacity_logits, ns.opacity_logits)
    # view-dependent colour is the same seen from corresponding camera positions
    for center in ([3.0, 0.0, 1.0], [-2.0, 4.0, -1.0]):
        center = np.array(center)
        torch.testing.assert_close(
            data.colors(camera_at(center)),
            ns.colors(camera_at(ns_scale * (ns_rotation @ center + ns_translation))),
            atol=1e-5,
            rtol=1e-5,
        )

    applied = np.array([[1.0, 0, 0, 0], [0, 0, 1, 0], [0, -1, 0, 0]])
    transforms_json = tmp_path / "transforms.json"
    transforms_json.write_text(json.dumps({"applied_transform": applied.tolist(), "frames": []}))
    in_json_frame = load_splatfacto(tmp_path, frame="data", transforms_json=transforms_json)
    np.testing.assert_allclose(in_json_frame.means.numpy(), means @ applied[:, :3].T, atol=1e-5)


def test_rotate_sh_inverts_and_keeps_degree_zero():
    generator = torch.Generator().manual_seed(0)
    sh = torch.randn(5, 16, 3, generator=generator, dtype=torch.float64)
    turn = rotation("y", 0.4) @ rotation("z", 2.0)
    rotated = rotate_sh(sh, turn)
    assert torch.equal(rotated[:, 0], sh[:, 0])
    torch.testing.assert_close(rotate_sh(rotated, turn.T), sh)
    with pytest.raises(ValueError, match="scale times a rotation"):
        transform_gaussians(
            Gaussians(torch.zeros(1, 3), torch.ones(1, 4), torch.zeros(1, 3), torch.zeros(1), sh[:1]),
            np.diag([1.0, 2.0, 1.0]),
            np.zeros(3),
        )
