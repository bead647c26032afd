"""nerfstudio's ``transforms.json`` dataparser with the sparse points read by plyfile instead of open3d."""

from __future__ import annotations

from pathlib import Path

import torch
from nerfstudio.data.dataparsers.nerfstudio_dataparser import Nerfstudio


class CclgsDataParser(Nerfstudio):
    """Same outputs as nerfstudio's parser; only the ``.ply`` reader differs."""

    def _load_3D_points(self, ply_file_path: Path, transform_matrix: torch.Tensor, scale_factor: float):
        """Points in nerfstudio's world frame: {"points3D_xyz": (P, 3) float32, "points3D_rgb": (P, 3) uint8}.

        transform_matrix: (3, 4) the dataparser's pose transform; scale_factor: its scale.
        None when the file holds no points (splatfacto then initialises randomly).
        """
        from cclgs_core.scene.ply import read_points

        xyz, rgb = read_points(ply_file_path)  # (P, 3) float32, (P, 3) uint8
        if len(xyz) == 0:
            return None
        points = torch.from_numpy(xyz).float()
        points = torch.cat([points, torch.ones_like(points[:, :1])], dim=1) @ transform_matrix.T  # (P, 3)
        return {"points3D_xyz": points * scale_factor, "points3D_rgb": torch.from_numpy(rgb)}
