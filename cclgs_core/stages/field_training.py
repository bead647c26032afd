"""Training the semantic field on frozen Gaussians (docs/design.md, "Semantic field").

Per step: one training view (a seeded shuffle of the views per epoch), render the field's
features with the field backend, decode each level with its head and apply the compressor's
loss to the pixels that carry a target (a view without any, an image in which no mask was
found, is left out). Adam, lr 1e-3, on the per-Gaussian features and the heads; the geometry
is frozen. A checkpoint (features, heads, optimiser, step) is written atomically every
``checkpoint_every`` steps, so a killed run resumes where it stopped and ends with the same
result. A non-finite loss stops training with an error; the last good checkpoint stays on disk.
"""

from __future__ import annotations

import io
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from cclgs_core.errors import CclgsError, DataError, error_summary
from cclgs_core.plumbing.cache import atomic_write_bytes, remove_stale_temporaries
from cclgs_core.scene.gaussians import Gaussians
from cclgs_core.stages.semantic_field import SemanticField, pixel_targets, target_accuracy
from cclgs_core.types import Camera


class TrainingDiverged(CclgsError):
    """The loss became NaN or Inf."""


@dataclass
class FieldView:
    """One training view: its camera and, per level, the (H, W) segments and per-mask targets."""

    camera: Camera
    segments: dict[str, np.ndarray]
    mask_targets: dict[str, np.ndarray]

    def targets(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """level -> (valid (H, W) bool, per-pixel targets (P,) or (P, L))."""
        return {level: pixel_targets(self.segments[level], self.mask_targets[level]) for level in self.segments}


@dataclass
class TrainingLog:
    steps: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    accuracy: list[dict[str, float]] = field(default_factory=list)


def _view_at(step: int, view_count: int, seed: int) -> int:
    """The view of a step: views visited in a fresh seeded permutation per epoch, a pure
    function of (step, seed) so that a resumed run replays exactly the same sequence."""
    epoch, position = divmod(step, view_count)
    return int(np.random.default_rng([seed, epoch]).permutation(view_count)[position])


def _checkpoint_state(
    field_module: SemanticField, optimizer: torch.optim.Optimizer, step: int, log: TrainingLog
) -> bytes:
    buffer = io.BytesIO()
    torch.save(
        {
            "step": step,
            "field": field_module.state_dict(),
            "optimizer": optimizer.state_dict(),
            "log": {"steps": log.steps, "losses": log.losses, "accuracy": log.accuracy},
        },
        buffer,
    )
    return buffer.getvalue()


def _load_checkpoint(path: Path, device: torch.device | str) -> dict[str, Any]:
    """The training state saved at ``path``, read as tensors and plain values only. A checkpoint
    holding any other Python object is refused, never unpickled: in a run directory someone else
    wrote, unpickling could run their code."""
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError:
        raise DataError(
            f"{path} holds Python objects other than tensors and plain values, which no cclgs checkpoint does, so it "
            "was not loaded (unpickling it could run code). Delete it to train from the start"
        ) from None
    except Exception as error:  # truncated or not a torch file at all
        raise DataError(
            f"{path} is not a readable training checkpoint ({error_summary(error)}). Delete it to train from the start"
        ) from None


def fit_field_to_views(
    gaussians: Gaussians,
    views: Sequence[FieldView],
    compressors: Mapping[str, Any],
    backend: Any,
    iterations: int,
    lr: float = 1e-3,
    field_dim: int = 8,
    pixels_per_step: int = 0,
    seed: int = 0,
    checkpoint_path: Path | None = None,
    checkpoint_every: int = 1000,
    progress: Callable[[str, int, int], None] | None = None,
    log_every: int = 50,
    device: torch.device | str = "cpu",
) -> tuple[SemanticField, TrainingLog]:
    """Fit the semantic field to the views' targets; resumes from ``checkpoint_path`` if it exists.

    gaussians: N frozen Gaussians; views: the training views; compressors: level -> fitted compressor.
    ``pixels_per_step`` > 0 samples that many target pixels per level and step (0: all). The
    Gaussians, the field and the targets live on ``device``; so does the returned field.
    """
    frozen = Gaussians(
        gaussians.means.detach(),
        gaussians.quats.detach(),
        gaussians.log_scales.detach(),
        gaussians.opacity_logits.detach(),
        gaussians.sh.detach(),
    ).to(device)
    semantic = SemanticField(len(frozen), compressors, field_dim=field_dim, seed=seed).to(device)
    optimizer = torch.optim.Adam(semantic.parameters(), lr=lr, betas=(0.9, 0.999))
    log = TrainingLog()
    start = 0
    if checkpoint_path is not None:
        remove_stale_temporaries(Path(checkpoint_path).parent)
    if checkpoint_path is not None and Path(checkpoint_path).exists():
        state = _load_checkpoint(Path(checkpoint_path), device)
        semantic.load_state_dict(state["field"])
        optimizer.load_state_dict(state["optimizer"])
        log = TrainingLog(**state["log"])
        start = state["step"]

    # A view that no mask covers (an image without masks) teaches nothing; train on the others.
    targets = [
        {level: (valid.to(device), values.to(device)) for level, (valid, values) in view.targets().items()}
        for view in views
    ]
    kept = [
        index
        for index, view_targets in enumerate(targets)
        if any(bool(valid.any()) for valid, _ in view_targets.values())
    ]
    if not kept:
        raise DataError(
            "no training view has a pixel covered by a mask, so the semantic field has nothing to learn; check the "
            "mask stage"
        )
    views, targets = [views[index] for index in kept], [targets[index] for index in kept]
    backend.prepare(frozen, [view.camera for view in views])
    saved_step = start  # the step of the newest checkpoint on disk
    try:
        for step in range(start, iterations):
            index = _view_at(step, len(views), seed)
            rendered = backend.render(frozen, semantic.features, views[index].camera).features  # (H, W, levels * d_f)
            view_targets = targets[index]
            if pixels_per_step:
                view_targets = _sample_pixels(view_targets, pixels_per_step, np.random.default_rng([seed, step]))
            loss, _ = semantic.loss(rendered, view_targets)
            if not torch.isfinite(loss):
                where = f"; the last good checkpoint is {checkpoint_path}" if checkpoint_path else ""
                raise TrainingDiverged(
                    f"semantic field loss became {float(loss)} at step {step}{where}. Lower [train] lr."
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if step % log_every == 0 or step == iterations - 1:
                log.steps.append(step)
                log.losses.append(float(loss.detach()))
                log.accuracy.append(target_accuracy(semantic, rendered.detach(), view_targets))
            if checkpoint_path is not None and ((step + 1) % checkpoint_every == 0 or step == iterations - 1):
                atomic_write_bytes(Path(checkpoint_path), _checkpoint_state(semantic, optimizer, step + 1, log))
                saved_step = step + 1
            if progress is not None:
                progress("semantic field", step + 1, iterations)
    except KeyboardInterrupt as stop:  # say what a resumed run starts from
        if checkpoint_path is None:
            stop.add_note("no checkpoint (training without one starts again from step 0)")
        elif saved_step:
            stop.add_note(f"the semantic field's checkpoint of step {saved_step} in {checkpoint_path}")
        else:
            stop.add_note(f"no checkpoint yet (one is written every {checkpoint_every} steps)")
        raise
    return semantic, log


def _sample_pixels(
    targets: Mapping[str, tuple[torch.Tensor, torch.Tensor]], count: int, rng: np.random.Generator
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Keep at most ``count`` random target pixels per level (the valid mask shrinks accordingly)."""
    sampled = {}
    for level, (valid, values) in targets.items():
        positions = torch.nonzero(valid.reshape(-1)).squeeze(1)
        if len(positions) > count:
            keep = torch.as_tensor(np.sort(rng.choice(len(positions), count, replace=False)), device=valid.device)
            new_valid = torch.zeros_like(valid.reshape(-1))
            new_valid[positions[keep]] = True
            sampled[level] = (new_valid.reshape(valid.shape), values[keep])
        else:
            sampled[level] = (valid, values)
    return sampled


def views_accuracy(
    field_module: SemanticField, gaussians: Gaussians, backend: Any, views: Sequence[FieldView]
) -> float:
    """Share of target pixels, over all ``views`` and codebook levels, whose decoded index equals the target."""
    correct = total = 0
    for view in views:
        with torch.no_grad():
            rendered = backend.render(gaussians, field_module.features, view.camera).features  # (H, W, levels * d_f)
        for level, (valid, targets) in view.targets().items():
            valid, targets = valid.to(rendered.device), targets.to(rendered.device)
            correct += int((field_module.predicted_targets(rendered[valid], level) == targets).sum())
            total += int(valid.sum())
    return correct / max(total, 1)
