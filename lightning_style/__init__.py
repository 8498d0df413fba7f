"""Gatys et al.'s neural style transfer as a PyTorch Lightning package."""

from .data import Pair, PairDataModule, load_image
from .errors import NonFiniteError, StyleTransferError, WriteError
from .features import VGGFeatures
from .losses import content_loss, gram_matrix, style_loss, total_variation
from .module import StyleTransfer

__all__ = [
    "NonFiniteError",
    "Pair",
    "PairDataModule",
    "StyleTransfer",
    "StyleTransferError",
    "VGGFeatures",
    "WriteError",
    "content_loss",
    "gram_matrix",
    "load_image",
    "style_loss",
    "total_variation",
]
