"""The ``ccl-lgs`` method: its config classes and the ``MethodSpecification`` nerfstudio discovers.

nerfstudio imports this module for every ``ns-*`` command, so it imports only nerfstudio's own
config classes (which nerfstudio has loaded already); the model, pipeline and dataparser
implementations are named by ``_target`` factories.

    ns-train ccl-lgs --data SCENE --pipeline.model.cclgs-config run.toml
    ns-train ccl-lgs --data SCENE --machine.device-type cpu     # renders with the "torch" field backend
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Tuple, Type

from nerfstudio.configs.base_config import ViewerConfig
from nerfstudio.data.datamanagers.full_images_datamanager import FullImageDatamanagerConfig
from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig
from nerfstudio.engine.optimizers import AdamOptimizerConfig
from nerfstudio.engine.schedulers import ExponentialDecaySchedulerConfig
from nerfstudio.engine.trainer import TrainerConfig
from nerfstudio.models.splatfacto import SplatfactoModelConfig
from nerfstudio.pipelines.base_pipeline import VanillaPipelineConfig
from nerfstudio.plugins.types import MethodSpecification


def _implementation(module: str, name: str) -> Type:
    return getattr(importlib.import_module(f"cclgs_nerfstudio.{module}"), name)


@dataclass
class CclgsDataParserConfig(NerfstudioDataParserConfig):
    """nerfstudio's ``transforms.json`` parser, reading the sparse-point ``.ply`` with plyfile (no open3d)."""

    _target: Type = field(default_factory=lambda: _implementation("dataparser", "CclgsDataParser"))
    load_3D_points: bool = True
    """Initialise the Gaussians from ``ply_file_path`` of transforms.json when it is present."""


@dataclass
class CclgsModelConfig(SplatfactoModelConfig):
    """Splatfacto plus a semantic field: per-Gaussian features and per-level decoder heads
    (docs/design.md, "Semantic field")."""

    _target: Type = field(default_factory=lambda: _implementation("model", "CclgsModel"))
    cclgs_config: Optional[Path] = None
    """cclgs run config (TOML) naming the mask generator, tracker, feature extractor, compressor; None: defaults."""
    cclgs_set: Tuple[str, ...] = ()
    """Overrides of the run config, each section.key=value (as `cclgs --set`)."""
    cclgs_run_dir: Optional[Path] = None
    """Run directory of the preprocessing cache (masks, features, labels, compressor) [default: DATA/cclgs]."""
    cclgs_downscale: int = 1
    """Image downscale of the preprocessing, as `cclgs preprocess --downscale` (targets resample to any render size)."""
    semantic_loss_weight: float = 1.0
    """Weight of the semantic loss (the compressor's loss summed over levels) added to splatfacto's RGB loss."""
    field_backend: str = "torch"
    """cclgs field backend that renders colour and semantics when the device is not CUDA (CUDA uses gsplat)."""
    backend_densify_grad_thresh: float = 0.0002
    """Densification threshold on the mean screen-space gradient when rendering with the field backend, which
    provides plain gradients, not gsplat's absgrad (0.0002 is 3DGS's value for plain gradients)."""
    lpips_metric: bool = False
    """Report LPIPS in evaluations (torchmetrics downloads torchvision's AlexNet weights on first use)."""


@dataclass
class CclgsPipelineConfig(VanillaPipelineConfig):
    """The vanilla pipeline, which also hands the model the scene folder and the training images."""

    _target: Type = field(default_factory=lambda: _implementation("pipeline", "CclgsPipeline"))


def _adam(lr: float, schedule: ExponentialDecaySchedulerConfig | None = None) -> dict:
    return {"optimizer": AdamOptimizerConfig(lr=lr, eps=1e-15), "scheduler": schedule}


def _trainer_config() -> TrainerConfig:
    """Splatfacto's schedule and learning rates, plus Adam lr 1e-3 for the semantic features and heads."""
    return TrainerConfig(
        method_name="ccl-lgs",
        steps_per_eval_image=100,
        steps_per_eval_batch=0,
        steps_per_save=2000,
        steps_per_eval_all_images=1000,
        max_num_iterations=30000,
        mixed_precision=False,
        pipeline=CclgsPipelineConfig(
            datamanager=FullImageDatamanagerConfig(dataparser=CclgsDataParserConfig(), cache_images_type="uint8"),
            model=CclgsModelConfig(),
        ),
        optimizers={
            "means": _adam(1.6e-4, ExponentialDecaySchedulerConfig(lr_final=1.6e-6, max_steps=30000)),
            "features_dc": _adam(0.0025),
            "features_rest": _adam(0.0025 / 20),
            "opacities": _adam(0.05),
            "scales": _adam(0.005),
            "quats": _adam(0.001),
            "semantic_features": _adam(1e-3),
            "semantic_heads": _adam(1e-3),
            "camera_opt": _adam(
                1e-4,
                ExponentialDecaySchedulerConfig(lr_final=5e-7, max_steps=30000, warmup_steps=1000, lr_pre_warmup=0),
            ),
            "bilateral_grid": _adam(
                2e-3,
                ExponentialDecaySchedulerConfig(lr_final=1e-4, max_steps=30000, warmup_steps=1000, lr_pre_warmup=0),
            ),
        },
        viewer=ViewerConfig(num_rays_per_chunk=1 << 15),
        vis="viewer",
    )


ccl_lgs = MethodSpecification(
    config=_trainer_config(),
    description="CCL-LGS: splatfacto with a jointly trained 3D language field (text queries in the viewer).",
)
