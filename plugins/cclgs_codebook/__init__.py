"""Contrastive codebook learning (CCL-LGS, docs/design.md, "Contrastive codebook") and its plain-codebook ablation."""

from cclgs_codebook.codebook import ContrastiveCodebook, PlainCodebook
from cclgs_core import hookimpl

__all__ = ["ContrastiveCodebook", "PlainCodebook"]


@hookimpl
def cclgs_register_compressor(register):
    register("ccl", ContrastiveCodebook)
    register("codebook", PlainCodebook)
