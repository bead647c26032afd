"""The ccl-lgs model: splatfacto whose Gaussians also carry the semantic field (docs/design.md,
"Semantic field" and "Queries").

- Every Gaussian carries ``levels * d_f`` semantic features, stored in ``gauss_params`` as
  "semantic_features" so that densification (duplicate, split, prune) carries them along; the
  per-level decoder heads and losses come from ``cclgs_core.stages.semantic_field.SemanticField``.
- On CUDA, colour is splatfacto's gsplat rasterisation (whose screen-space gradients drive
  densification, as in splatfacto) and the semantic features are rendered by the "gsplat" field
  backend in a second pass. On any other device one pass of the configured cclgs field backend
  (default "torch") renders colour and semantics together and supplies what gsplat's
  ``DefaultStrategy`` needs to densify (packed 2D means with their gradients, ids and radii).
- Training adds the compressor's loss (cross-entropy against prototype indices for codebooks,
  regression for the autoencoder) on the pixels that carry a target, weighted by
  ``semantic_loss_weight``. Targets come from the cclgs preprocessing cache, matched to
  nerfstudio's training images by file name and resampled (nearest) to the rendered size.
- The viewer shows a text box; a query adds a "relevance_<level>" output per mask level.
- The fitted compressors travel in the checkpoint, so evaluation and rendering need only the run
  config and the checkpoint, not the preprocessing cache.

Shapes: N Gaussians, H x W the rendered image, C = levels * d_f semantic channels, D embedding size.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Any, Dict, Iterator, Mapping, Optional, Sequence

import numpy as np
import torch
from nerfstudio.cameras.cameras import Cameras, CameraType
from nerfstudio.models.splatfacto import SplatfactoModel
from nerfstudio.utils.rich_utils import CONSOLE
from torch.nn import Parameter

from cclgs_core import LEVELS, Camera, CclgsError, ConfigError, DataError, PluginError
from cclgs_core.scene.gaussians import Gaussians
from cclgs_core.stages.semantic_field import SemanticField, pixel_targets

#: nerfstudio cameras are OpenGL (x right, y up, z backward); cclgs cameras are OpenCV.
_OPENGL_TO_OPENCV = np.diag([1.0, -1.0, -1.0, 1.0])

#: What ``DefaultStrategy`` reads from a packed render to densify.
_DENSIFY_EXTRAS = ("means2d", "gaussian_ids", "radii")


class CompressorStates(torch.nn.Module):
    """Puts each level's fitted compressor state into the model's state dict (as ``_extra_state``),
    so that a checkpoint restores decoding without the preprocessing cache."""

    def __init__(self, compressors: Mapping[str, Any]):
        super().__init__()
        self.compressors = dict(compressors)

    def get_extra_state(self) -> dict:
        return {level: compressor.state_dict() for level, compressor in self.compressors.items()}

    def set_extra_state(self, state: dict) -> None:
        for level, compressor_state in state.items():
            self.compressors[level].load_state_dict(compressor_state)


@contextlib.contextmanager
def _user_errors_end_the_run() -> Iterator[None]:
    """Errors a user can fix (bad run config, scene or missing geometry) end ``ns-train`` with their
    one-line message and exit status 2, as in the ``cclgs`` CLI, instead of a traceback."""
    try:
        yield
    except CclgsError as error:
        print(
            f"cclgs: {error}\n(under ns-train, run-config settings are given with "
            "--pipeline.model.cclgs-config FILE or --pipeline.model.cclgs-set section.key=value)",
            file=sys.stderr,
        )
        raise SystemExit(2) from None


def opencv_camera(camera: Cameras, camera_to_world: torch.Tensor) -> Camera:
    """The cclgs camera of a single nerfstudio camera at its current output resolution.

    camera_to_world: (1, 3, 4) OpenGL pose (possibly corrected by the camera optimiser).
    """
    if int(camera.camera_type.flatten()[0]) != CameraType.PERSPECTIVE.value:
        raise DataError("ccl-lgs renders pinhole cameras only; undistort the images and use a perspective camera model")
    pose = np.eye(4)
    pose[:3] = camera_to_world.detach().reshape(3, 4).double().cpu().numpy()
    return Camera(
        pose @ _OPENGL_TO_OPENCV,
        fx=float(camera.fx.flatten()[0]),
        fy=float(camera.fy.flatten()[0]),
        cx=float(camera.cx.flatten()[0]),
        cy=float(camera.cy.flatten()[0]),
        width=int(camera.width.flatten()[0]),
        height=int(camera.height.flatten()[0]),
    )


def resample_nearest(segments: np.ndarray, height: int, width: int) -> np.ndarray:
    """segments: (H0, W0) mask ids -> (height, width), each pixel taking the id under its centre."""
    rows = np.minimum(((np.arange(height) + 0.5) * segments.shape[0] / height).astype(np.int64), segments.shape[0] - 1)
    cols = np.minimum(((np.arange(width) + 0.5) * segments.shape[1] / width).astype(np.int64), segments.shape[1] - 1)
    return segments[rows[:, None], cols[None, :]]


def view_targets(view: Any, height: int, width: int) -> dict:
    """Per-pixel targets of a FieldView at a rendered size: level -> (valid (H, W) bool,
    (P,) int64 indices or (P, L) latents), the segments resampled to (height, width)."""
    return {
        level: pixel_targets(resample_nearest(view.segments[level], height, width), view.mask_targets[level])
        for level in view.segments
    }


def views_by_image_index(
    image_filenames: Sequence[Path], frames: Sequence[Any], views: Sequence[Any], scene: Path
) -> dict:
    """Training image index -> FieldView of the cclgs frame with the same file name (without suffix).

    Images with no such frame get no semantic loss; DataError if none matches at all.
    """
    by_name: dict[str, Any] = {}
    for frame, view in zip(frames, views):
        name = Path(frame.image_path).stem
        if name in by_name:
            raise DataError(
                f"{scene}: two frames have images named {name!r}; file names must be unique to match nerfstudio's "
                "images"
            )
        by_name[name] = view
    matched = {
        index: by_name[Path(path).stem] for index, path in enumerate(image_filenames) if Path(path).stem in by_name
    }
    if image_filenames and not matched:
        raise DataError(
            f"{scene}: none of nerfstudio's training images ({Path(image_filenames[0]).name}, ...) has the file name "
            f"of a cclgs frame ({Path(frames[0].image_path).name if frames else 'no frames'}, ...); point --data and "
            "the cclgs run at the same scene"
        )
    return matched


class CclgsModel(SplatfactoModel):
    """Splatfacto with per-Gaussian semantic features; see the module docstring."""

    def populate_modules(self) -> None:
        """Splatfacto's initialisation without its CUDA-only calls and without the LPIPS download
        (unless ``lpips_metric``); the semantic parameters are added by ``setup_semantics``."""
        from gsplat.strategy import DefaultStrategy
        from nerfstudio.models.splatfacto import RGB2SH, num_sh_bases, random_quat_tensor
        from nerfstudio.utils.colors import get_color
        from pytorch_msssim import SSIM
        from torchmetrics.image import PeakSignalNoiseRatio

        self.on_cuda = torch.device(self.kwargs.get("device", "cpu")).type == "cuda"
        if not self.on_cuda and self.config.camera_optimizer.mode != "off":
            raise ConfigError(
                "the field backend path renders from fixed camera poses; pass --pipeline.model.camera-optimizer.mode "
                "off (camera optimisation needs CUDA and gsplat)"
            )
        seeded = self.seed_points is not None and not self.config.random_init
        if seeded:
            means = self.seed_points[0].float().clone()  # (N, 3)
        else:
            means = (torch.rand(self.config.num_random, 3) - 0.5) * self.config.random_scale
        distances, _ = self.k_nearest_sklearn(means, 3)
        log_scales = torch.log(torch.from_numpy(distances).mean(dim=-1, keepdim=True)).repeat(1, 3)  # (N, 3)
        count = means.shape[0]
        sh = torch.zeros(count, num_sh_bases(self.config.sh_degree), 3)  # (N, K, 3)
        if seeded and self.seed_points[1].shape[0] > 0:
            rgb = self.seed_points[1].float() / 255.0
            sh[:, 0] = RGB2SH(rgb) if self.config.sh_degree > 0 else torch.logit(rgb, eps=1e-10)
        else:
            sh[:, 0] = torch.rand(count, 3)
        self.gauss_params = torch.nn.ParameterDict(
            {
                "means": Parameter(means),
                "scales": Parameter(log_scales),
                "quats": Parameter(random_quat_tensor(count)),
                "features_dc": Parameter(sh[:, 0].contiguous()),
                "features_rest": Parameter(sh[:, 1:].contiguous()),
                "opacities": Parameter(torch.logit(0.1 * torch.ones(count, 1))),
            }
        )
        self.camera_optimizer = self.config.camera_optimizer.setup(num_cameras=self.num_train_data, device="cpu")
        self.psnr = PeakSignalNoiseRatio(data_range=1.0)
        self.ssim = SSIM(data_range=1.0, size_average=True, channel=3)
        if self.config.lpips_metric:
            from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

            self.lpips = LearnedPerceptualImagePatchSimilarity(normalize=True)
        self.step = 0
        self.crop_box = None
        if self.config.background_color == "random":
            self.background_color = torch.tensor([0.1490, 0.1647, 0.2157])  # viser's background, for rendering
        else:
            self.background_color = get_color(self.config.background_color)
        if self.config.use_bilateral_grid:
            from nerfstudio.model_components.lib_bilagrid import BilateralGrid

            self.bil_grids = BilateralGrid(
                num=self.num_train_data,
                grid_X=self.config.grid_shape[0],
                grid_Y=self.config.grid_shape[1],
                grid_W=self.config.grid_shape[2],
            )
        # The field backend gives plain screen-space gradients; only gsplat computes absgrad.
        absgrad = self.config.use_absgrad and self.on_cuda
        self.strategy = DefaultStrategy(
            prune_opa=self.config.cull_alpha_thresh,
            grow_grad2d=self.config.densify_grad_thresh if absgrad else self.config.backend_densify_grad_thresh,
            grow_scale3d=self.config.densify_size_thresh,
            grow_scale2d=self.config.split_screen_size,
            prune_scale3d=self.config.cull_scale_thresh,
            prune_scale2d=self.config.cull_screen_size,
            refine_scale2d_stop_iter=self.config.stop_screen_size_at,
            refine_start_iter=self.config.warmup_length,
            refine_stop_iter=self.config.stop_split_at,
            reset_every=self.config.reset_alpha_every * self.config.refine_every,
            refine_every=self.config.refine_every,
            pause_refine_after_reset=self.num_train_data + self.config.refine_every,
            absgrad=absgrad,
            revised_opacity=False,
            verbose=True,
        )
        self.strategy_state = self.strategy.initialize_state(scene_scale=1.0)
        self.semantic: Optional[SemanticField] = None
        self._views: dict = {}
        self._backend: Any = None
        self._extractor: Any = None
        self._query_cache: tuple[str, torch.Tensor, torch.Tensor] | None = None

    # -- semantic field ------------------------------------------------------------------------

    def setup_semantics(self, data_dir: Path, image_filenames: Sequence[Path], prepare_targets: bool) -> None:
        """Add the semantic features (N, C) to ``gauss_params`` and build the heads.

        data_dir:        the scene nerfstudio reads (--data), read again by cclgs' scene readers
        image_filenames: nerfstudio's training images, in training-index order
        prepare_targets: run or read the preprocessing cache and match its targets to the images
                         (training); otherwise the compressors are fresh instances whose fitted
                         state the checkpoint restores (evaluation, rendering, viewing)
        """
        from nerfstudio.viewer.viewer_elements import ViewerText

        from cclgs_core import get_registry
        from cclgs_core.plumbing.config import load_config

        registry = get_registry()
        with _user_errors_end_the_run():
            run_config = load_config(self.config.cclgs_config, self.config.cclgs_set)
        if prepare_targets:
            from cclgs_core.datasets import load_scene
            from cclgs_core.stages.pipeline import prepare_field_targets

            with _user_errors_end_the_run():
                scene = load_scene(data_dir, downscale=self.config.cclgs_downscale)
                run_dir = self.config.cclgs_run_dir or scene.root / "cclgs"
                prepared = prepare_field_targets(scene, run_config, run_dir, registry, progress=_log_progress)
            compressors = prepared.compressors
            self._views = views_by_image_index(image_filenames, prepared.frames, prepared.views, data_dir)
            CONSOLE.log(
                f"cclgs: semantic targets for {len(self._views)} of {len(image_filenames)} training images ({run_dir})"
            )
        else:
            compressors = {level: run_config.create("compressor", registry) for level in LEVELS}
        self.run_config = run_config
        self.compressor_states = CompressorStates(compressors)
        self._build_heads()
        generator = torch.Generator().manual_seed(run_config.seed)
        features = 0.1 * torch.randn(self.num_points, self.semantic.channels, generator=generator)  # (N, C)
        self.gauss_params["semantic_features"] = Parameter(features.to(self.device))
        self.query_text = ViewerText(
            "cclgs query", "", hint="Text query; adds a relevance_<level> output per mask level"
        )

    def _build_heads(self) -> None:
        """Fresh decoder heads sized by the compressors' current output sizes. The SemanticField's
        own feature table is empty: the per-Gaussian features live in ``gauss_params``."""
        train = self.run_config.train
        compressors = self.compressor_states.compressors
        self.semantic = SemanticField(0, compressors, field_dim=train.field_dim, seed=self.run_config.seed).to(
            self.device
        )

    def load_state_dict(self, state_dict, **kwargs):  # type: ignore[override]
        """Restore the fitted compressors first, so that heads whose size depends on the fit (a
        codebook's prototype count) are rebuilt at the checkpoint's size; splatfacto then resizes
        every ``gauss_params`` entry, the semantic features included, to the checkpoint's N."""
        compressor_state = state_dict.get("compressor_states._extra_state")
        if compressor_state is not None:
            self.compressor_states.set_extra_state(compressor_state)
            current = self.semantic.state_dict()
            saved = {key[len("semantic.") :]: value for key, value in state_dict.items() if key.startswith("semantic.")}
            if any(key in current and current[key].shape != value.shape for key, value in saved.items()):
                self._build_heads()
        return super().load_state_dict(state_dict, **kwargs)

    @property
    def semantic_features(self) -> torch.Tensor:
        """(N, C) per-Gaussian semantic features."""
        return self.gauss_params["semantic_features"]

    def get_gaussian_param_groups(self) -> Dict[str, list]:
        groups = super().get_gaussian_param_groups()
        groups["semantic_features"] = [self.gauss_params["semantic_features"]]
        return groups

    def get_param_groups(self) -> Dict[str, list]:
        groups = super().get_param_groups()
        groups["semantic_heads"] = list(self.semantic.heads.parameters())
        return groups

    # -- rendering -------------------------------------------------------------------------------

    def field_backend(self) -> Any:
        """The cclgs field backend named by the config, created on first use."""
        if self._backend is None:
            from cclgs_core import get_registry

            name = "gsplat" if self.on_cuda else self.config.field_backend
            backend = get_registry().create("field_backend", name)
            if not backend.differentiable:
                raise ConfigError(
                    f"field backend {name!r} is not differentiable (it freezes the geometry) and cannot train splats; "
                    "pass --pipeline.model.field-backend torch"
                )
            self._backend = backend
        return self._backend

    def _crop_ids(self) -> Optional[torch.Tensor]:
        """(N,) bool Gaussians inside the viewer's crop box, or None (no crop; never while training)."""
        if self.crop_box is None or self.training:
            return None
        return self.crop_box.within(self.means).squeeze()

    def _view(self, camera: Cameras) -> Camera:
        """The cclgs camera of ``camera`` at the current training resolution."""
        pose = self.camera_optimizer.apply_to_camera(camera) if self.training else camera.camera_to_worlds
        factor = self._get_downscale_factor()
        camera.rescale_output_resolution(1 / factor)
        view = opencv_camera(camera, pose)
        camera.rescale_output_resolution(factor)
        return view

    def _gaussians(self, crop_ids: Optional[torch.Tensor]) -> tuple[Gaussians, torch.Tensor]:
        """The (cropped) Gaussians with the SH degree in use, and their (N, C) semantic features."""
        if self.config.sh_degree > 0:
            degree = min(self.step // self.config.sh_degree_interval, self.config.sh_degree)
            sh = torch.cat([self.features_dc[:, None, :], self.features_rest[:, : (degree + 1) ** 2 - 1]], dim=1)
        else:
            sh = self.features_dc[:, None, :]
        gaussians = Gaussians(self.means, self.quats, self.scales, self.opacities.squeeze(-1), sh)
        features = self.semantic_features
        if crop_ids is not None:
            gaussians, features = gaussians.subset(crop_ids), features[crop_ids]
        return gaussians, features

    def _colours(self, gaussians: Gaussians, view: Camera) -> torch.Tensor:
        """(N, 3) colours seen from ``view`` (SH, or a sigmoid of the DC term when sh_degree is 0)."""
        if self.config.sh_degree > 0:
            return gaussians.colors(view)
        return torch.sigmoid(gaussians.sh[:, 0])

    def get_outputs(self, camera: Cameras) -> Dict[str, Any]:
        """Splatfacto's outputs plus "semantic" (H, W, C) and, with a query outside training,
        "relevance_<level>" (H, W, 1)."""
        if not isinstance(camera, Cameras):
            return {}
        if self.on_cuda:
            outputs = super().get_outputs(camera)
            outputs["semantic"] = self._semantics_with_gsplat(camera, outputs["rgb"].shape[:2])
        else:
            outputs = self._outputs_with_backend(camera)
        if not self.training:
            outputs.update(self.relevance_outputs(outputs["semantic"]))
        return outputs

    def _semantics_with_gsplat(self, camera: Cameras, size: tuple[int, int]) -> torch.Tensor:
        """(H, W, C) semantic features rendered by the "gsplat" backend from the same camera as the colour."""
        crop_ids = self._crop_ids()
        if crop_ids is not None and not bool(crop_ids.any()):
            return self.semantic_features.new_zeros(*size, self.semantic.channels)
        gaussians, features = self._gaussians(crop_ids)
        return self.field_backend().render(gaussians, features, self._view(camera)).features

    def _outputs_with_backend(self, camera: Cameras) -> Dict[str, Any]:
        """One field-backend pass for colour and semantics, shaped like splatfacto's outputs."""
        view = self._view(camera)
        height, width = view.height, view.width
        self.last_size = (height, width)
        crop_ids = self._crop_ids()
        if crop_ids is not None and not bool(crop_ids.any()):
            outputs = self.get_empty_outputs(width, height, self.background_color)
            outputs["semantic"] = self.semantic_features.new_zeros(height, width, self.semantic.channels)
            return outputs
        gaussians, features = self._gaussians(crop_ids)
        rendered = self.field_backend().render(
            gaussians, torch.cat([self._colours(gaussians, view), features], dim=1), view
        )
        if self.training and self.step < self.strategy.refine_stop_iter:
            missing = [name for name in _DENSIFY_EXTRAS if name not in rendered.extras]
            if missing:
                raise PluginError(
                    f"field backend {self.config.field_backend!r} does not expose {', '.join(missing)} in "
                    "RenderOutput.extras, "
                    "which densification needs; use --pipeline.model.field-backend torch, or turn densification off "
                    "with --pipeline.model.stop-split-at 0"
                )
            self.info = {name: rendered.extras[name] for name in _DENSIFY_EXTRAS}
            self.info.update(width=width, height=height, n_cameras=1)
            self.strategy.step_pre_backward(
                self.gauss_params, self.optimizers, self.strategy_state, self.step, self.info
            )
        alpha = rendered.alpha[..., None]  # (H, W, 1)
        background = self._get_background_color()
        rgb = torch.clamp(rendered.features[..., :3] + (1 - alpha) * background, 0.0, 1.0)
        if self.config.use_bilateral_grid and self.training and camera.metadata and "cam_idx" in camera.metadata:
            rgb = self._apply_bilateral_grid(rgb[None], camera.metadata["cam_idx"], height, width)[0]
        depth = None
        if self.config.output_depth_during_training or not self.training:
            depth = rendered.depth[..., None]
            depth = torch.where(alpha > 0, depth, depth.detach().max())
        if not self.training:
            background = background.expand(height, width, 3)
        return {
            "rgb": rgb,
            "depth": depth,
            "accumulation": alpha,
            "background": background,
            "semantic": rendered.features[..., 3:],
        }

    def step_post_backward(self, step: int) -> None:
        """Densification bookkeeping; the field backend's renders are packed (one row per drawn Gaussian)."""
        if self.on_cuda:
            super().step_post_backward(step)
            return
        assert step == self.step
        if step < self.strategy.refine_stop_iter and self.info["means2d"].grad is None:
            # Nothing was drawn (or nothing drawn reached the loss): no screen-space gradient this step.
            self.info["means2d"].grad = torch.zeros_like(self.info["means2d"])
        self.strategy.step_post_backward(
            params=self.gauss_params,
            optimizers=self.optimizers,
            state=self.strategy_state,
            step=self.step,
            info=self.info,
            packed=True,
        )

    # -- losses and metrics ---------------------------------------------------------------------

    def semantic_targets(self, image_index: int, height: int, width: int) -> Optional[dict]:
        """``view_targets`` of a training image on the model's device, or None when the image has no cclgs frame."""
        view = self._views.get(int(image_index))
        if view is None:
            return None
        return {
            level: (valid.to(self.device), values.to(self.device))
            for level, (valid, values) in view_targets(view, height, width).items()
        }

    def get_loss_dict(self, outputs, batch, metrics_dict=None) -> Dict[str, torch.Tensor]:
        loss_dict = super().get_loss_dict(outputs, batch, metrics_dict)
        if self.training and self.config.semantic_loss_weight > 0:
            semantic = outputs["semantic"]
            targets = self.semantic_targets(batch["image_idx"], semantic.shape[0], semantic.shape[1])
            if targets is not None:
                loss, _ = self.semantic.loss(semantic, targets)
                loss_dict["semantic_loss"] = self.config.semantic_loss_weight * loss
        return loss_dict

    def get_metrics_dict(self, outputs, batch) -> Dict[str, torch.Tensor]:
        """Splatfacto's metrics plus, on training images, the share of target pixels whose decoded
        prototype index is right ("semantic_accuracy_<level>", codebook compressors)."""
        from cclgs_core.stages.semantic_field import target_accuracy

        metrics = super().get_metrics_dict(outputs, batch)
        if self.training:
            semantic = outputs["semantic"].detach()
            targets = self.semantic_targets(batch["image_idx"], semantic.shape[0], semantic.shape[1])
            if targets is not None:
                for level, accuracy in target_accuracy(self.semantic, semantic, targets).items():
                    metrics[f"semantic_accuracy_{level}"] = accuracy
        return metrics

    def get_image_metrics_and_images(self, outputs, batch):
        """Splatfacto's evaluation, with LPIPS only when ``lpips_metric`` is set."""
        if self.config.lpips_metric:
            return super().get_image_metrics_and_images(outputs, batch)
        from nerfstudio.model_components.lib_bilagrid import color_correct

        gt_rgb = self.composite_with_background(self.get_gt_img(batch["image"]), outputs["background"])  # (H, W, 3)
        predicted_rgb = outputs["rgb"]  # (H, W, 3)
        images = {"img": torch.cat([gt_rgb, predicted_rgb], dim=1)}
        gt, predicted = (torch.moveaxis(image, -1, 0)[None] for image in (gt_rgb, predicted_rgb))  # (1, 3, H, W)
        metrics = {"psnr": float(self.psnr(gt, predicted).item()), "ssim": float(self.ssim(gt, predicted))}
        if self.config.color_corrected_metrics:
            corrected = torch.moveaxis(color_correct(predicted_rgb, gt_rgb), -1, 0)[None]
            metrics["cc_psnr"] = float(self.psnr(gt, corrected).item())
            metrics["cc_ssim"] = float(self.ssim(gt, corrected))
        return metrics, images

    # -- queries -------------------------------------------------------------------------------

    def text_embeddings(self, text: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(1, D) query and (K, D) canonical embeddings from the run config's feature extractor
        (created on the first query; the last query's embeddings are kept)."""
        from cclgs_core.stages.relevance import text_embeddings

        if self._query_cache is None or self._query_cache[0] != text:
            if self._extractor is None:
                self._extractor = self.run_config.create("feature_extractor")
            queries, canonical = text_embeddings(self._extractor, [text])
            self._query_cache = (text, queries, canonical)
        return self._query_cache[1], self._query_cache[2]

    @torch.no_grad()
    def relevance_outputs(self, semantic: torch.Tensor, text: Optional[str] = None) -> Dict[str, torch.Tensor]:
        """semantic: (H, W, C) rendered features -> {"relevance_<level>": (H, W, 1)} for ``text``
        (default: the viewer's query box); empty without a query."""
        from cclgs_core.stages.relevance import relevance_in_chunks

        text = (self.query_text.value if text is None else text).strip()
        if not text:
            return {}
        queries, canonical = self.text_embeddings(text)
        height, width, channels = semantic.shape
        pixels = semantic.reshape(-1, channels)  # (P, C)
        outputs = {}
        for level in self.semantic.levels:
            compressor = self.semantic.compressors[level]

            def embed(start: int, stop: int, level: str = level, compressor: Any = compressor) -> torch.Tensor:
                with torch.inference_mode():  # decode need not be differentiable
                    return compressor.decode(self.semantic.outputs(pixels[start:stop], level).cpu())  # (P', D)

            scores = relevance_in_chunks(embed, pixels.shape[0], queries, canonical)  # (1, P)
            outputs[f"relevance_{level}"] = scores[0].reshape(height, width, 1).to(semantic.device)
        return outputs


def _log_progress(stage: str, done: int, total: int) -> None:
    if done == total or done % max(1, total // 10) == 0:
        CONSOLE.log(f"cclgs {stage}: {done}/{total}")
