"""``StyleTransfer``: the LightningModule whose only trainable parameters are the output images."""

import math
import zlib
from collections.abc import Iterator, Sequence
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning_utilities.core.rank_zero import rank_zero_warn
from pytorch_lightning import LightningModule
from pytorch_lightning.cli import OptimizerCallable
from torch import Tensor, nn

from .color import keep_content_colours, match_colours
from .data import Pair, load_image, open_image
from .errors import NonFiniteError, StyleTransferError
from .features import Backbone, Pooling, VGGFeatures
from .checkpoints import SafeCheckpointIO, is_remote
from .losses import content_loss, gram_matrix, style_loss, total_variation

STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")


class Targets(NamedTuple):
    """What the rows of one image group are matched to, at one pyramid level."""

    content: dict[str, Tensor]  # layer -> (B, C, H, W) activations of the contents
    style: dict[str, Tensor]  # layer -> (B, C, C) target Grams; with masks (B, R, C, C), one per region
    masks: Tensor | None  # (B, R, H, W) region masks at the content's full size, or None


def downsample(images: Tensor, factor: int) -> Tensor:
    """``(..., H, W)`` images shrunk ``factor`` times (bilinear, antialiased); ``factor`` 1 returns them as they are."""
    if factor == 1:
        return images
    h, w = images.shape[-2:]
    batch = images.reshape(-1, *images.shape[-3:])
    small = F.interpolate(batch, size=(round(h / factor), round(w / factor)), mode="bilinear", antialias=True)
    return small.reshape(*images.shape[:-2], *small.shape[-2:])


def _layer_weights(layers: Sequence[str] | dict[str, float], option: str) -> dict[str, float]:
    """A list of layers gets equal weights summing to 1 (the paper's ``w_l = 1/5``); a dict keeps its weights."""
    weights = dict(layers) if isinstance(layers, dict) else {layer: 1 / len(layers) for layer in layers}
    if not weights:
        raise StyleTransferError(f"--model.{option} is empty")
    if bad := [layer for layer, weight in weights.items() if not weight >= 0]:
        raise StyleTransferError(f"--model.{option}: weight of {bad[0]} must be >= 0, got {weights[bad[0]]}")
    return weights


def check_trainer(trainer) -> None:
    """Refuse a precision that would store the images themselves in 16 bits."""
    precision = str(trainer.precision)
    if precision in ("16-true", "bf16-true"):
        raise StyleTransferError(f"--trainer.precision {precision} would store the images in low precision; use bf16-mixed or 16-mixed")


class StyleTransfer(LightningModule):
    """Gatys et al.'s neural style transfer: optimise one image per content/style pair.

    The images are created in ``setup`` from the pairs of the trainer's datamodule (a :class:`PairDataModule`),
    one ``(N, 3, H, W)`` parameter per image shape (a single batch when all contents have the same size). They are
    the only parameters: the VGG is frozen, and its weights are kept out of checkpoints.

    Args:
        backbone: ``vgg19_bn``, ``vgg19`` or ``vgg16``.
        weights: ``DEFAULT`` (torchvision's ImageNet weights, downloaded once into the torch hub cache), a path to
            a torchvision-format state_dict, or ``null`` for random weights (tests and smoke runs only).
        content_layers: layers matched to the content image, a list (equal weights) or ``{layer: weight}``.
        style_layers: layers whose Gram matrices are matched to the style image, a list or ``{layer: weight}``.
        content_weight: alpha, the weight of the content loss.
        style_weight: beta, the weight of the style loss. Both losses are normalised (see :mod:`.losses`), so the
            ratio means the same for every backbone and image size.
        tv_weight: weight of the total-variation loss (smoothness); 0 turns it off.
        init: starting image: ``content``, ``style`` (the first style, resized to the content's shape), ``noise``
            (uniform, seeded by ``seed_everything``) or the path of an image.
        pooling: ``max`` (torchvision's) or ``avg`` (the paper's suggestion).
        preserve_color: ``none``; ``luminance``: the result keeps its luminance but takes the content's colours
            (YIQ, applied to what is written and logged, as neural-style's ``-original_colors``); ``histogram``:
            the style image's colours are matched to the content's (mean and covariance) before its Grams are
            taken, so the style is transferred in the photo's palette (Gatys et al. 2017).
        optimizer: called with the list of image parameters; default ``Adam(lr=0.02)``. L-BFGS works too, e.g.
            ``class_path: torch.optim.LBFGS``, ``init_args: {lr: 1, max_iter: 1, history_size: 20}`` (see ``configs/lbfgs.yaml``).
        levels: coarse-to-fine pyramid: with ``levels`` L > 1 the first ``level_steps`` steps are taken at
            1/2^(L-1) of the size, the next ``level_steps`` at twice that, ..., and the rest at full size. The
            images stay full-size parameters: a coarse level computes the loss on their downsampled copy, so a
            step costs what a step at that size costs, and each level starts from the previous result with a
            fresh optimiser state (Adam's moments and L-BFGS's curvature pairs belong to the previous level's
            loss; measured, carrying Adam's over reaches a given loss later).
        level_steps: steps at each coarse level.
        checkpointing: activation checkpointing in the VGG: less memory per pixel, for larger images, at the
            cost of one more forward pass per step (see the README's performance section).
        channels_last: run the VGG on channels-last tensors (measured in ``benchmarks/speed_options.py``).
        compile: ``torch.compile`` the VGG (the first steps are slower while it compiles).
    """

    def __init__(
        self,
        backbone: Backbone = "vgg19_bn",
        weights: str | None = "DEFAULT",
        content_layers: list[str] | dict[str, float] = ("relu4_2",),
        style_layers: list[str] | dict[str, float] = STYLE_LAYERS,
        content_weight: float = 1.0,
        style_weight: float = 100.0,
        tv_weight: float = 0.0,
        init: str = "content",
        pooling: Pooling = "max",
        preserve_color: Literal["none", "luminance", "histogram"] = "none",
        optimizer: OptimizerCallable | None = None,
        levels: int = 1,
        level_steps: int = 100,
        checkpointing: bool = False,
        channels_last: bool = False,
        compile: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["optimizer"])
        for option, value in [("content_weight", content_weight), ("style_weight", style_weight), ("tv_weight", tv_weight)]:
            if not 0 <= value < math.inf:
                raise StyleTransferError(f"--model.{option} must be a finite number >= 0, got {value}")
        if not (isinstance(levels, int) and levels >= 1 and isinstance(level_steps, int) and level_steps >= 1):
            raise StyleTransferError(f"--model.levels and --model.level_steps must be >= 1, got {levels} and {level_steps}")
        if init not in ("content", "style", "noise"):
            open_image(init, "--model.init image").close()
        self.content_layers = _layer_weights(content_layers, "content_layers")
        self.style_layers = _layer_weights(style_layers, "style_layers")
        if weights is None:
            rank_zero_warn("--model.weights null: random VGG weights, the result will not look artistic")
        self.features = VGGFeatures(
            [*self.content_layers, *self.style_layers], backbone, weights, pooling, checkpointing, channels_last
        )
        if compile:
            self.features.compile()
        # DDP would otherwise broadcast the frozen VGG's buffers (its weights, 80 MB) from rank 0 at every step.
        self._ddp_params_and_buffers_to_ignore = [f"features.{name}" for name, _ in self.features.named_buffers()]
        self.optimizer = optimizer
        self.images = nn.ParameterList()
        self.groups: list[list[str]] = []  # pair names held in each image parameter, in row order
        self._shards: list[Tensor] = []  # rows of each image parameter that this process optimises
        self._targets: list[dict[int, Targets]] = []  # for those rows, by downsampling factor

    # --- images -----------------------------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        """Create one image per pair of ``trainer.datamodule.pairs`` (a second fit continues from the images)."""
        check_trainer(self.trainer)
        if type(self.trainer.strategy.checkpoint_io) is TorchCheckpointIO:  # Lightning's default: make it safe
            self.trainer.strategy.checkpoint_io = SafeCheckpointIO()
        datamodule = getattr(self.trainer, "datamodule", None)
        if not hasattr(datamodule, "pairs"):
            raise StyleTransferError("StyleTransfer needs a PairDataModule: trainer.fit(model, datamodule=PairDataModule(...))")
        datamodule.check_min_size(self.min_image_size)
        self.pairs: dict[str, Pair] = {pair.name: pair for pair in datamodule.pairs}
        groups: dict[tuple[int, ...], list[str]] = {}
        for pair in datamodule.pairs:
            groups.setdefault(tuple(pair.content.shape), []).append(pair.name)
        if len(self.images):
            if self.groups != list(groups.values()):
                raise StyleTransferError("this model holds the images of other pairs than the datamodule gives")
            return
        self.groups = list(groups.values())
        init = self.hparams.init
        start = None if init in ("content", "style", "noise") else load_image(init, role="--model.init image")
        for names in self.groups:
            self.images.append(nn.Parameter(torch.stack([self._initial_image(self.pairs[name], start) for name in names])))

    @property
    def min_image_size(self) -> int:
        """The shortest side, in pixels, that an image needs: the chosen layers' minimum at the coarsest level."""
        return self.features.min_size * 2 ** (self.hparams.levels - 1)

    def factor_at(self, step: int) -> int:
        """How many times the images are downsampled at ``step`` (1 at full size)."""
        level = min(step // self.hparams.level_steps, self.hparams.levels - 1)
        return 2 ** (self.hparams.levels - 1 - level)

    def _initial_image(self, pair: Pair, start: Tensor | None) -> Tensor:
        if self.hparams.init == "content":
            return pair.content.clone()
        if self.hparams.init == "noise":
            # One generator per pair, seeded by its name: its start depends neither on the other pairs nor on order.
            generator = torch.Generator().manual_seed(torch.initial_seed() + zlib.crc32(pair.name.encode()))
            return torch.rand(pair.content.shape, generator=generator)
        image = pair.styles[0] if start is None else start
        return F.interpolate(image[None], size=pair.content.shape[1:], mode="bilinear", antialias=True)[0].clamp(0, 1)

    def results(self) -> Iterator[tuple[str, Tensor]]:
        """``(pair name, (3, H, W) image in [0, 1])`` for every pair, detached; with ``preserve_color:
        luminance``, in the content's colours (during fit, or wherever ``pairs`` is set)."""
        recolour = self.hparams.preserve_color == "luminance" and hasattr(self, "pairs")
        for names, images in zip(self.groups, self.images):
            for name, image in zip(names, images.detach()):
                yield name, keep_content_colours(image, self.pairs[name].content.to(image)) if recolour else image

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["pair_groups"] = self.groups

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path, map_location=None, hparams_file=None, strict=None,
                             weights_only=None, **kwargs) -> "StyleTransfer":
        """Lightning's ``load_from_checkpoint``, always with ``weights_only=True`` and from local files only."""
        if is_remote(checkpoint_path):
            raise StyleTransferError(f"checkpoint {checkpoint_path}: remote checkpoints are not loaded (unpickling one "
                                     "can run code); download it and pass the local file")
        return super().load_from_checkpoint(checkpoint_path, map_location, hparams_file, strict, True, **kwargs)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Check that a resumed run has the checkpoint's pairs and image sizes; without a datamodule
        (``load_from_checkpoint``), create empty images of the saved shapes for the state_dict to fill."""
        if len(self.images):
            if checkpoint["pair_groups"] != self.groups:
                raise StyleTransferError("--ckpt_path: the checkpoint holds other pairs than --data.content/--data.style give")
            for index, images in enumerate(self.images):
                saved = checkpoint["state_dict"].get(f"images.{index}")
                if saved is None or saved.shape != images.shape:
                    size = "x".join(map(str, saved.shape[-2:][::-1])) if saved is not None else "?"
                    raise StyleTransferError(f"--ckpt_path: the checkpoint's images of {self.groups[index][0]} are "
                                             f"{size} px, this run's {images.shape[-1]}x{images.shape[-2]} px; "
                                             "resume with the checkpoint's --data.image_size")
        else:
            self.groups = checkpoint["pair_groups"]
            for index in range(len(self.groups)):
                self.images.append(nn.Parameter(torch.empty_like(checkpoint["state_dict"][f"images.{index}"])))

    # --- loss --------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def on_fit_start(self) -> None:
        """Shard the pairs over the processes (pair k goes to rank k mod world size) and compute the targets of
        this process's pairs once, on its device, at every pyramid level: content activations and style Grams."""
        rank, world = self.trainer.global_rank, self.trainer.world_size
        order = {name: k for k, name in enumerate(self.pairs)}
        self._shards, self._targets = [], []
        for names in self.groups:
            rows = [row for row, name in enumerate(names) if order[name] % world == rank]
            self._shards.append(torch.tensor(rows, dtype=torch.long, device=self.device))
            pairs = [self.pairs[names[row]] for row in rows]
            self._targets.append({2**k: self._targets_of(pairs, 2**k) for k in range(self.hparams.levels)} if rows else {})

    def _targets_of(self, pairs: list[Pair], factor: int) -> Targets:
        content = downsample(torch.stack([pair.content for pair in pairs]).to(self.device), factor)
        content_targets = {k: v for k, v in self.features(content).items() if k in self.content_layers}
        grams = [self._style_grams(pair, factor) for pair in pairs]
        style_targets = {layer: torch.cat([gram[layer] for gram in grams]) for layer in self.style_layers}
        masks = None if pairs[0].masks is None else torch.stack([pair.masks for pair in pairs]).to(self.device)
        return Targets(content_targets, style_targets, masks)

    def _style_grams(self, pair: Pair, factor: int = 1) -> dict[str, Tensor]:
        """``{layer: (1, C, C)}`` target Grams of a pair: a blend's are the weighted sum of its styles' Grams; with
        masks, ``{layer: (1, R, C, C)}``, one per style. Styles shrink with the pyramid level, like the content."""
        grams = {layer: [] for layer in self.style_layers}
        for style, weight in zip(pair.styles, pair.style_weights):
            if self.hparams.preserve_color == "histogram":
                style = match_colours(style, pair.content)
            features = self.features(downsample(style[None].to(self.device), factor))
            for layer in self.style_layers:
                grams[layer].append(gram_matrix(features[layer]) * (1.0 if pair.masks is not None else weight))
        if pair.masks is not None:
            return {layer: torch.stack(grams[layer], dim=1) for layer in self.style_layers}
        return {layer: sum(grams[layer]) for layer in self.style_layers}

    def pair_losses(self, images: Tensor, group: int, factor: int = 1) -> dict[str, Tensor]:
        """Per-pair losses ``{name: (B,)}`` of this process's rows of one image group, at the pyramid level that
        shrinks images ``factor`` times: ``loss``, ``content``, ``style``, ``style/<layer>``, ``tv``."""
        targets = self._targets[group][factor]
        images = downsample(images, factor)
        features = self.features(images)
        losses = {f"style/{layer}": style_loss(features[layer], targets.style[layer], targets.masks) for layer in self.style_layers}
        losses["content"] = sum(w * content_loss(features[l], targets.content[l]) for l, w in self.content_layers.items())
        losses["style"] = sum(w * losses[f"style/{layer}"] for layer, w in self.style_layers.items())
        losses["tv"] = total_variation(images)
        h = self.hparams
        losses["loss"] = h.content_weight * losses["content"] + h.style_weight * losses["style"] + h.tv_weight * losses["tv"]
        return losses

    def training_step(self, batch: int, batch_idx: int) -> Tensor:
        """Sum of the losses of this process's pairs, so each pair's gradient is its own; logs means over all pairs."""
        sums, unused, factor = {}, [], self.factor_at(self.global_step)
        for group, (images, rows) in enumerate(zip(self.images, self._shards)):
            if not len(rows):
                unused.append(images.sum() * 0)  # DDP expects a gradient for every parameter
                continue
            mine = images if len(rows) == len(images) else images[rows]
            for key, value in self.pair_losses(mine, group, factor).items():
                sums[key] = sums.get(key, 0) + value.sum()
        keys = ["loss", "content", "style", *(f"style/{layer}" for layer in self.style_layers), "tv"]
        local = torch.stack([torch.as_tensor(sums.get(key, 0.0), device=self.device) for key in keys])
        totals = self.trainer.strategy.reduce(local.detach(), reduce_op="sum")
        if not torch.isfinite(totals).all():
            bad = [key for key, total in zip(keys, totals) if not torch.isfinite(total)]
            raise NonFiniteError(f"step {self.global_step}: train/{bad[-1]} is {totals[keys.index(bad[-1])].item()}; "
                                 "stopped with the last good images (lower the loss weights or the learning rate)")
        count = len(self.pairs)
        self.log("train/loss", totals[0] / count, prog_bar=True, batch_size=count)
        # Each self.log call costs about 0.5 ms, as much as a 64 px step: log the terms only when the loggers write
        # (Lightning writes step metrics every log_every_n_steps steps and drops the values of the steps between).
        if (self.global_step + 1) % self.trainer.log_every_n_steps == 0:
            self.log_dict({f"train/{key}": total / count for key, total in zip(keys[1:], totals[1:])}, batch_size=count)
            if self.hparams.levels > 1:
                self.log("train/scale", 1 / factor, batch_size=count)
        # DDP averages gradients over the processes and only a pair's owner computes its loss: scaling by the world
        # size gives every pair the gradient a one-process run would give it. The value returned is the total over
        # all pairs, the same on every process, so that L-BFGS takes the same decisions everywhere.
        loss = local[0] * self.trainer.world_size + sum(unused)
        return loss + (totals[0] - loss).detach()

    # --- optimisation ------------------------------------------------------------------------------------------
    def configure_optimizers(self) -> torch.optim.Optimizer:
        optimizer = (self.optimizer or (lambda params: torch.optim.Adam(params, lr=0.02)))(list(self.images))
        if isinstance(optimizer, torch.optim.LBFGS):
            if str(self.trainer.precision) == "16-mixed":
                raise StyleTransferError("L-BFGS cannot run with --trainer.precision 16-mixed (gradient scaling); use bf16-mixed or 32-true")
            if optimizer.defaults["line_search_fn"] and optimizer.defaults["max_iter"] == 1:
                rank_zero_warn("L-BFGS with a line search and max_iter 1 stalls once a line search returns a zero step; use max_iter > 1 or no line search")
        return optimizer

    def on_train_batch_start(self, batch: int, batch_idx: int) -> None:
        step = self.global_step
        if 0 < step <= self.hparams.level_steps * (self.hparams.levels - 1) and step % self.hparams.level_steps == 0:
            for optimizer in self.trainer.optimizers:
                optimizer.state.clear()  # a new level, a new loss: start the optimiser afresh

    def optimizer_step(self, *args, **kwargs) -> None:
        # Clamp here, not in a batch-end hook: checkpoint callbacks run before the module's hooks and would
        # otherwise save the unclamped image, so a resumed run would differ from an uninterrupted one.
        last_good = [images.detach().clone() for images in self.images]
        try:
            super().optimizer_step(*args, **kwargs)
            if not all(torch.isfinite(images).all() for images in self.images):
                raise NonFiniteError(f"step {self.global_step}: the optimiser step made an image NaN or infinite; "
                                     "stopped with the last good images (lower the learning rate)")
        except NonFiniteError:  # from here or from training_step, maybe inside an L-BFGS line search
            with torch.no_grad():
                for images, previous in zip(self.images, last_good):
                    images.copy_(previous)
            raise
        with torch.no_grad():
            for images in self.images:
                images.clamp_(0, 1)
