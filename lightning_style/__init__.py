"""Gatys et al.'s neural style transfer as a PyTorch Lightning package."""

from .batch import BatchResult, BatchRun
from .data import PairDataModule
from .errors import NonFiniteError, OptionError, StyleTransferError, WriteError
from .features import VGGFeatures
from .images import load_image
from .losses import content_loss, gram_matrix, style_loss, total_variation
from .module import StyleTransfer
from .objective import StyleObjective
from .pairs import PairBatch
from .quiet import quiet_lightning
from .strategy import IndependentDDPStrategy

quiet_lightning()

__all__ = [
    "BatchResult",
    "BatchRun",
    "IndependentDDPStrategy",
    "NonFiniteError",
    "OptionError",
    "PairBatch",
    "PairDataModule",
    "StyleObjective",
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
