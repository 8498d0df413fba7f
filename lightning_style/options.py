"""Checks of ``StyleTransfer``'s options, its optimiser and the trainer it runs under: one line naming the option,
before any compute."""

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from lightning_utilities.core.rank_zero import rank_zero_warn
from pytorch_lightning.strategies import DDPStrategy

from .errors import OptionError
from .strategy import IndependentDDPStrategy
from .style_losses import STYLE_LOSSES

STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
MODEL = "StyleTransfer"


def check_model_options(options: Mapping[str, Any]) -> None:
    """Raise :class:`OptionError` for the first bad value among ``StyleTransfer``'s ``options``."""
    for option in ("content_weight", "style_weight", "tv_weight", "temporal_weight"):
        if not 0 <= options[option] < math.inf:
            raise OptionError(MODEL, option, options[option], "must be a finite number >= 0")
    for option in ("levels", "level_steps", "check_every_n_steps", "plateau_window"):
        if not (isinstance(options[option], int) and options[option] >= 1):
            raise OptionError(MODEL, option, options[option], "must be a whole number >= 1")
    if not 0 <= options["plateau_tolerance"] < 1:
        raise OptionError(MODEL, "plateau_tolerance", options["plateau_tolerance"], "must be in [0, 1)")
    if options["style_loss"] not in STYLE_LOSSES:
        raise OptionError(MODEL, "style_loss", options["style_loss"], f"must be one of {', '.join(STYLE_LOSSES)}")
    if options["preserve_color"] not in ("none", "luminance", "histogram"):
        raise OptionError(MODEL, "preserve_color", options["preserve_color"], "must be none, luminance or histogram")
    if options["init"] not in ("content", "style", "noise"):
        raise OptionError(MODEL, "init", options["init"], "must be content, style or noise (a starting image file "
                                                            "is the data's: PairDataModule(init=...))")


def layer_weights(layers: Sequence[str] | dict[str, float], option: str) -> dict[str, float]:
    """A list of layers gets equal weights summing to 1 (the paper's ``w_l = 1/5``); a dict keeps its weights."""
    weights = dict(layers) if isinstance(layers, dict) else {layer: 1 / len(layers) for layer in layers}
    if not weights:
        raise OptionError(MODEL, option, layers, "is empty")
    if bad := [layer for layer, weight in weights.items() if not weight >= 0]:
        raise OptionError(MODEL, option, layers, f"gives {bad[0]} the weight {weights[bad[0]]}; weights must be >= 0")
    return weights


def check_trainer(trainer) -> None:
    """Refuse a precision that would store the images themselves in 16 bits, gradient clipping (over a batch: it
    would couple the pairs), DDP that would mix the processes' images (it averages gradients and needs every
    process to hold parameters of the same shapes), and fewer processes than torchrun started."""
    precision = str(trainer.precision)
    if precision in ("16-true", "bf16-true"):
        raise OptionError("Trainer", "precision", precision, "would store the images in low precision; use "
                                                             "bf16-mixed or 16-mixed")
    if trainer.gradient_clip_val:
        raise OptionError("Trainer", "gradient_clip_val", trainer.gradient_clip_val, "would tie a batch's pairs "
                          "together (a norm over the batch), and no result would record it; leave it unset")
    if type(trainer.strategy).__name__ in ("DeepSpeedStrategy", "FSDPStrategy", "XLAStrategy", "ModelParallelStrategy",
                                           "SingleDeviceXLAStrategy"):
        raise OptionError("Trainer", "strategy", type(trainer.strategy).__name__, "shards or compiles a model for "
                          "training its weights; here each process optimises its own images: use auto or ddp")
    if isinstance(trainer.strategy, DDPStrategy) and not isinstance(trainer.strategy, IndependentDDPStrategy):
        raise OptionError("Trainer", "strategy", "ddp", "would average the images' gradients over the processes; use "
                          "lightning_style.IndependentDDPStrategy() (the command line does this for ddp: add "
                          "--trainer.strategy ddp)")
    started = os.environ.get("WORLD_SIZE", "") if "TORCHELASTIC_RUN_ID" in os.environ else ""
    if started.isdigit() and int(started) != trainer.world_size:
        # Lightning would run each of torchrun's processes alone as rank 0: every pair done once per process.
        raise OptionError("Trainer", "num_nodes", trainer.num_nodes,
                          f"x devices {trainer.num_devices} makes {trainer.world_size} process(es), but torchrun "
                          f"started {started}: set num_nodes to torchrun's --nnodes and devices to its "
                          "--nproc_per_node")


def check_optimizer(optimizer: torch.optim.Optimizer, trainer) -> None:
    """L-BFGS cannot run under gradient scaling (16-mixed), and stalls with a line search of one iteration."""
    if not isinstance(optimizer, torch.optim.LBFGS):
        return
    if str(trainer.precision) == "16-mixed":
        raise OptionError("Trainer", "precision", "16-mixed", "cannot run L-BFGS (gradient scaling); use bf16-mixed "
                                                             "or 32-true")
    if optimizer.defaults["line_search_fn"] and optimizer.defaults["max_iter"] == 1:
        rank_zero_warn("L-BFGS with a line search and max_iter 1 stalls once a line search returns a zero step; use "
                       "max_iter > 1 or no line search")
