"""Scene data: camera poses, 3D Gaussians, ``.ply`` files, lens undistortion and the dense
reference rasteriser. The readers of scene folders are in ``cclgs_core.datasets``."""
