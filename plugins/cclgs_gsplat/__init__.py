"""Built-in field backends (Gaussian rasterisers)."""

from cclgs_core import hookimpl
from cclgs_gsplat.reference import ReferenceBackend


@hookimpl
def cclgs_register_field_backend(register):
    register("reference", ReferenceBackend)
