"""Checks of ``StyleTransfer``'s options and of the trainer it runs under: a one-line error naming the option,
before any compute."""

import math
from collections.abc import Mapping, Sequence
from typing import Any

from pytorch_lightning.strategies import DDPStrategy

from .errors import StyleTransferError
from .images import open_image
from .strategy import IndependentDDPStrategy
from .style_losses import STYLE_LOSSES


def check_options(options: Mapping[str, Any]) -> None:
    """Raise :class:`StyleTransferError` for the first bad value among ``StyleTransfer``'s ``options`` (its
    hyperparameters): weights, step counts, the plateau stop, the style loss, an ``init`` image that can't be read."""
    for option in ("content_weight", "style_weight", "tv_weight"):
        if not 0 <= options[option] < math.inf:
            raise StyleTransferError(f"--model.{option} must be a finite number >= 0, got {options[option]}")
    steps, tolerance, window = options["steps"], options["plateau_tolerance"], options["plateau_window"]
    if not (isinstance(steps, int) and steps >= 1):
        raise StyleTransferError(f"--model.steps must be >= 1, got {steps}")
    if not (0 <= tolerance < 1 and isinstance(window, int) and window >= 1):
        raise StyleTransferError(f"--model.plateau_tolerance must be in [0, 1) and --model.plateau_window >= 1, got "
                                 f"{tolerance} and {window}")
    every = options["check_every_n_steps"]
    if not (isinstance(every, int) and every >= 1):
        raise StyleTransferError(f"--model.check_every_n_steps must be >= 1, got {every}")
    levels, level_steps = options["levels"], options["level_steps"]
    if not (isinstance(levels, int) and levels >= 1 and isinstance(level_steps, int) and level_steps >= 1):
        raise StyleTransferError(f"--model.levels and --model.level_steps must be >= 1, got {levels} and {level_steps}")
    if options["style_loss"] not in STYLE_LOSSES:
        raise StyleTransferError(f"--model.style_loss must be one of {', '.join(STYLE_LOSSES)}, got {options['style_loss']!r}")
    if options["init"] not in ("content", "style", "noise"):
        open_image(options["init"], "--model.init").close()


def layer_weights(layers: Sequence[str] | dict[str, float], option: str) -> dict[str, float]:
    """A list of layers gets equal weights summing to 1 (the paper's ``w_l = 1/5``); a dict keeps its weights."""
    weights = dict(layers) if isinstance(layers, dict) else {layer: 1 / len(layers) for layer in layers}
    if not weights:
        raise StyleTransferError(f"--model.{option} is empty")
    if bad := [layer for layer, weight in weights.items() if not weight >= 0]:
        raise StyleTransferError(f"--model.{option}: weight of {bad[0]} must be >= 0, got {weights[bad[0]]}")
    return weights


def check_trainer(trainer) -> None:
    """Refuse a precision that would store the images themselves in 16 bits, gradient clipping (over a batch: it
    would couple the pairs), and DDP that would mix the processes' images (it averages gradients and needs every
    process to hold parameters of the same shapes)."""
    precision = str(trainer.precision)
    if precision in ("16-true", "bf16-true"):
        raise StyleTransferError(f"--trainer.precision {precision} would store the images in low precision; use bf16-mixed or 16-mixed")
    if trainer.gradient_clip_val:
        raise StyleTransferError(f"--trainer.gradient_clip_val {trainer.gradient_clip_val}: clipping the gradient "
                                 "of a batch would tie its pairs together, and no result would record it; leave it unset")
    if isinstance(trainer.strategy, DDPStrategy) and not isinstance(trainer.strategy, IndependentDDPStrategy):
        raise StyleTransferError("strategy='ddp' would average the images' gradients over the processes; use "
                                 "strategy=lightning_style.IndependentDDPStrategy() (the command line does this for 'ddp')")
