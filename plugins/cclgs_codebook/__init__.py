"""Contrastive codebook learning (CCL-LGS, DESIGN.md section 1 step 4) and its plain-codebook ablation."""

from cclgs_core import hookimpl
from cclgs_codebook.codebook import ContrastiveCodebook, PlainCodebook

__all__ = ["ContrastiveCodebook", "PlainCodebook"]


@hookimpl
def cclgs_register_compressor(register):
    register("ccl", ContrastiveCodebook)
    register("codebook", PlainCodebook)
