"""The ccl-lgs pipeline: nerfstudio's vanilla pipeline that connects the model to the scene on disk."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

from nerfstudio.pipelines.base_pipeline import VanillaPipeline

from cclgs_core import ConfigError


class CclgsPipeline(VanillaPipeline):
    """After the datamanager and model are built, give the model the scene folder and nerfstudio's
    training image files, so it can match them to the cclgs preprocessing by file name.

    Training (``test_mode == "val"``) runs or reads the preprocessing cache; evaluation and
    rendering rebuild the semantic field from the run config and the checkpoint alone.
    """

    def __init__(
        self,
        config,
        device: str,
        test_mode: Literal["test", "val", "inference"] = "val",
        world_size: int = 1,
        local_rank: int = 0,
        grad_scaler: Optional[object] = None,
    ):
        if world_size > 1:
            raise ConfigError("ccl-lgs trains on one device; run ns-train without --machine.num-devices > 1")
        super().__init__(config, device, test_mode, world_size, local_rank, grad_scaler)
        self.model.setup_semantics(
            data_dir=Path(self.datamanager.dataparser.config.data),
            image_filenames=list(self.datamanager.train_dataparser_outputs.image_filenames),
            prepare_targets=test_mode == "val",
        )
