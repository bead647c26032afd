"""LangSplat's scene autoencoder as a feature compressor (512 -> 3 -> 512 and a latent regression head)."""

from cclgs_autoencoder.compressor import AutoencoderCompressor
from cclgs_core import hookimpl

__all__ = ["AutoencoderCompressor"]


@hookimpl
def cclgs_register_compressor(register):
    register("autoencoder", AutoencoderCompressor)
