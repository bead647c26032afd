"""The gsplat field backend: gsplat's CUDA rasteriser (needs a GPU and gsplat's compiled extension)."""

from cclgs_core import hookimpl
from cclgs_gsplat.gsplat_backend import GsplatBackend


@hookimpl
def cclgs_register_field_backend(register):
    register("gsplat", GsplatBackend)
