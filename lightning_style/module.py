"""``StyleTransfer``: the LightningModule whose only trainable parameter is the batch of output images in progress."""

import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import torch
import torch.distributed as dist
import torch.nn.functional as F
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning_utilities.core.rank_zero import rank_zero_warn
from pytorch_lightning import LightningModule
from pytorch_lightning.callbacks import ModelSummary
from pytorch_lightning.cli import OptimizerCallable
from torch import Tensor, nn

from .checkpoints import SafeCheckpointIO, is_remote
from .color import keep_content_colours
from .errors import StyleTransferError
from .features import Backbone, Pooling, VGGFeatures
from .guard import FiniteGuard
from .images import load_image
from .in_progress import load_optimizer_state, optimizer_identity, pack, unpack
from .objective import StyleObjective
from .options import check_options, check_trainer, layer_weights
from .pairs import PairBatch
from .plateau import Plateau
from .record import fingerprint, plain
from .style_losses import StyleLossName

STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
RESULT_OPTIONS = ("backbone", "weights", "steps", "content_layers", "style_layers", "style_loss", "content_weight",
                  "style_weight", "tv_weight", "init", "pooling", "preserve_color", "levels", "level_steps",
                  "plateau_tolerance", "plateau_window")
LOSS_KEYS = ("loss", "content", "style", "tv")


class StyleTransfer(LightningModule):
    """Gatys et al.'s neural style transfer: optimise one image per content/style pair, a batch at a time.

    The trainer's loader (a :class:`~lightning_style.PairDataModule`) hands it :class:`~lightning_style.data.PairBatch`
    items, one per step: a batch's pixels at its first step, then its step counter. For each batch it builds a
    :class:`~lightning_style.objective.StyleObjective` (the targets) and one ``(B, 3, H, W)`` image parameter, the
    only parameter of the module, optimised for ``steps`` steps with a fresh optimiser. The VGG is frozen, and its
    weights are kept out of checkpoints.

    Args:
        backbone: ``vgg19_bn``, ``vgg19`` or ``vgg16``.
        weights: ``DEFAULT`` (torchvision's ImageNet weights, downloaded once into the torch hub cache), a path to
            a torchvision-format state_dict, or ``null`` for random weights (tests and smoke runs only).
        steps: optimisation steps each pair gets (a batch of pairs is optimised together for that many steps).
        content_layers: layers matched to the content image, a list (equal weights) or ``{layer: weight}``.
        style_layers: layers whose statistics are matched to the style image's, a list or ``{layer: weight}``.
        style_loss: how a layer's style is compared: ``gram`` (the paper's Gram matrices: second moments),
            ``wasserstein`` (the Wasserstein-2 distance between Gaussians fitted to the features: means and
            covariances) or ``sliced`` (sliced Wasserstein: the whole distributions along random directions, drawn
            anew at every step from the seed, the layer and the step). See the README for what each is good for.
        content_weight: alpha, the weight of the content loss.
        style_weight: beta, the weight of the style loss. Both losses are normalised (see ``losses.py``), so the
            ratio means the same for every backbone and image size.
        tv_weight: weight of the total-variation loss (smoothness); 0 turns it off.
        init: starting image: ``content``, ``style`` (the first style, resized to the content's shape), ``noise``
            (uniform, seeded by ``seed_everything`` and the pair's name) or the path of an image.
        pooling: ``max`` (torchvision's) or ``avg`` (the paper's suggestion).
        preserve_color: ``none``; ``luminance``: the result keeps its luminance but takes the content's colours
            (YIQ, applied to what is written and logged, as neural-style's ``-original_colors``); ``histogram``:
            the style image's colours are matched to the content's (mean and covariance) before its Grams are
            taken, so the style is transferred in the photo's palette (Gatys et al. 2017).
        optimizer: called with the list of image parameters; default ``Adam(lr=0.02)``. L-BFGS works too, e.g.
            ``class_path: torch.optim.LBFGS``, ``init_args: {lr: 1, max_iter: 1, history_size: 20}`` (see
            ``configs/lbfgs.yaml``); it treats a batch's images as one vector (one step length, one history).
        levels: coarse-to-fine pyramid: with ``levels`` L > 1 a batch's first ``level_steps`` steps are taken at
            1/2^(L-1) of the size, the next ``level_steps`` at twice that, ..., and the rest at full size. The
            images stay full-size parameters: a coarse level computes the loss on their downsampled copy, and
            each level starts from the previous result with a fresh optimiser state.
        level_steps: steps at each coarse level (counted within ``steps``).
        checkpointing: activation checkpointing in the VGG: less memory per pixel, for larger images, at the
            cost of one more forward pass per step (see the README's performance section).
        channels_last: run the VGG on channels-last tensors (measured in ``benchmarks/speed_options.py``).
        compile: ``torch.compile`` the VGG (the first steps are slower while it compiles).
        check_every_n_steps: how often the images and losses are checked for NaN or infinity. A step never waits
            for the device otherwise: a failure is found at the next check (also at each batch end and before each
            checkpoint), and the run stops with the images of the last good check, at most this many steps back.
            1 checks every step (the images before the failing step; a host synchronisation per step).
        plateau_tolerance: stop a batch early when its loss improved by less than this fraction over the last
            ``plateau_window`` steps (read at the checks, at full size only); 0 (the default) never stops early.
            The batch's remaining steps then cost nothing, and its images are written at its planned end.
        plateau_window: the steps over which the improvement is measured.
    """

    def __init__(
        self,
        backbone: Backbone = "vgg19_bn",
        weights: str | None = "DEFAULT",
        steps: int = 500,
        content_layers: list[str] | dict[str, float] = ("relu4_2",),
        style_layers: list[str] | dict[str, float] = STYLE_LAYERS,
        style_loss: StyleLossName = "gram",
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
        check_every_n_steps: int = 10,
        plateau_tolerance: float = 0.0,
        plateau_window: int = 100,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["optimizer"])
        check_options(self.hparams)
        self.content_layers = layer_weights(content_layers, "content_layers")
        self.style_layers = layer_weights(style_layers, "style_layers")
        if weights is None:
            rank_zero_warn("--model.weights null: random VGG weights, the result will not look artistic")
        self.features = VGGFeatures(
            [*self.content_layers, *self.style_layers], backbone, weights, pooling, checkpointing, channels_last
        )
        if compile:
            self.features.compile()
        self.optimizer = optimizer
        self.images = nn.Parameter(torch.zeros(0, 3, 1, 1))  # the batch in progress; none before the first
        self.names: tuple[str, ...] = ()  # its pairs, in row order
        self.objective: StyleObjective | None = None
        self.batch_done = False  # the step just taken was the batch's last (on every process at the same step)
        self.finished: list[tuple[str, Tensor]] = []  # then its pairs' images, for the callbacks
        self.final_losses: dict[str, Tensor] = {}  # and their last per-pair losses
        self.contents: Tensor | None = None  # the batch's content and style images, for colour and pictures
        self.styles: list[tuple[Tensor, ...]] = []
        self.skipped: list[str] = []  # pairs whose files failed to decode when their batch came up
        self.skipped_total = 0  # over every process, known at the end of fit
        self._step_in_batch = 0
        self._losses: dict[str, Tensor] = {}
        self.guard = FiniteGuard()  # NaN checks every check_every_n_steps, not at every step
        self.plateau = Plateau(plateau_tolerance, plateau_window)
        self._restored = None  # this process's batch in progress from a checkpoint, checked when it comes up

    @property
    def min_image_size(self) -> int:
        """The shortest side, in pixels, that an image needs: the chosen layers' minimum at the coarsest level."""
        return self.features.min_size * 2 ** (self.hparams.levels - 1)

    def factor_at(self, step: int) -> int:
        """How many times the images are downsampled at a batch's ``step`` (1 at full size)."""
        level = min(step // self.hparams.level_steps, self.hparams.levels - 1)
        return 2 ** (self.hparams.levels - 1 - level)

    def result_settings(self) -> dict:
        """The options that change a result, for its provenance (:mod:`lightning_style.record`): the loss, the
        optimiser (class and arguments), the steps, the precision; files (weights, an init image) by fingerprint.
        Not the options that only change speed or memory (``checkpointing``, ``channels_last``, ``compile``), nor
        the batch size (a pair's result does not depend on its batch with Adam; with L-BFGS only slightly)."""
        settings = {key: self.hparams[key] for key in RESULT_OPTIONS}
        for key in ("weights", "init"):
            if settings[key] not in (None, "DEFAULT", "content", "style", "noise") and Path(settings[key]).is_file():
                settings[key] = fingerprint(settings[key])
        settings["optimizer"] = optimizer_identity(self._new_optimizer([nn.Parameter(torch.zeros(1))]))
        settings["precision"] = str(self.trainer.precision)
        if self.hparams.init == "noise" or self.hparams.style_loss == "sliced":
            settings["seed"] = torch.initial_seed()  # it draws the noise and the directions
        return plain(settings)

    def setup(self, stage: str) -> None:
        check_trainer(self.trainer)
        # Lightning's model summary would print a table of 0 parameters: the images exist per batch.
        self.trainer.callbacks = [c for c in self.trainer.callbacks if not isinstance(c, ModelSummary)]
        if type(self.trainer.strategy.checkpoint_io) is TorchCheckpointIO:  # Lightning's default: make it safe
            self.trainer.strategy.checkpoint_io = SafeCheckpointIO()

    # --- a batch of pairs -------------------------------------------------------------------------------------
    def on_train_batch_start(self, batch: PairBatch, batch_idx: int) -> None:
        """At a batch's first step, start its images and optimiser; whenever pixels come (also the first step
        after a resume, whose images the checkpoint restored), build its targets; at a new pyramid level, clear
        the optimiser's state."""
        if batch.steps != self.hparams.steps:
            raise StyleTransferError(f"the data plans {batch.steps} steps per pair but the model {self.hparams.steps}; "
                                     "give PairDataModule and StyleTransfer the same steps")
        self.finished, self.batch_done, self._step_in_batch = [], False, batch.step
        self.skipped += batch.skipped
        if batch.contents is not None:
            if batch.names and min(batch.contents.shape[-2:]) < self.min_image_size:
                h, w = batch.contents.shape[-2:]
                raise StyleTransferError(f"pair {batch.names[0]}: {w}x{h} px, but the chosen layers (and --model.levels) need "
                                         f"at least {self.min_image_size} px on each side (raise --data.image_size)")
            if batch.step == 0 or not batch.names:
                self._start(batch)
            else:  # the first step of a resumed run, in the middle of a batch: the checkpoint's images go on
                self._resume(batch)
            self.contents, self.styles = batch.contents, batch.styles
            self.objective = None if not batch.names else StyleObjective(
                self.features, batch.contents, batch.styles, batch.style_weights, batch.masks,
                content_layers=self.content_layers, style_layers=self.style_layers,
                content_weight=self.hparams.content_weight, style_weight=self.hparams.style_weight,
                tv_weight=self.hparams.tv_weight, histogram=self.hparams.preserve_color == "histogram",
                factors=tuple(2**k for k in range(self.hparams.levels)), style_loss=self.hparams.style_loss,
                seed=torch.initial_seed(),
            )
        if 0 < batch.step <= self.hparams.level_steps * (self.hparams.levels - 1) and batch.step % self.hparams.level_steps == 0:
            for optimizer in self.trainer.optimizers:
                optimizer.state.clear()  # a new level, a new loss: start the optimiser afresh

    def _start(self, batch: PairBatch) -> None:
        self.names, self._restored = batch.names, None  # a checkpoint's batch that does not go on is forgotten
        if not batch.names:  # this process idles for a batch: one dummy pixel keeps the step count in line
            start = torch.zeros(1, 3, 1, 1, device=self.device)
        else:
            init = self.hparams.init
            image = None if init in ("content", "style", "noise") else load_image(init, role="--model.init")
            start = torch.stack([self._initial_image(name, content, styles[0], image)
                                 for name, content, styles in zip(batch.names, batch.contents, batch.styles)])
        self.images = nn.Parameter(start)
        self.trainer.strategy.optimizers = [self.configure_optimizers()]  # state belongs to the previous batch
        self.guard.start_batch(self.global_step)
        self.plateau.start_batch()

    def _resume(self, batch: PairBatch) -> None:
        where = f"--ckpt_path {self.trainer.ckpt_path}"
        probe = self._new_optimizer([nn.Parameter(torch.zeros(1))])  # its class and history size, for the checks
        images, state, plateau = unpack(self._restored, where, batch.names, batch.step, batch.contents.shape, probe)
        self._restored = None
        self.names, self.images = batch.names, nn.Parameter(images.to(self.device))
        optimizer = self.configure_optimizers()
        if state is not None:
            load_optimizer_state(optimizer, state, where)  # torch moves the state to the images' device
        self.trainer.strategy.optimizers = [optimizer]
        self.guard.start_batch(self.global_step - batch.step)
        self.plateau.load_state_dict(plateau)

    def _initial_image(self, name: str, content: Tensor, style: Tensor, image: Tensor | None) -> Tensor:
        if self.hparams.init == "content":
            return content.clone()
        if self.hparams.init == "noise":
            # One generator per pair, seeded by its name: its start depends neither on its batch nor on order.
            generator = torch.Generator().manual_seed(torch.initial_seed() + zlib.crc32(name.encode()))
            return torch.rand(content.shape, generator=generator).to(content)
        source = (style if image is None else image.to(content))[None]
        return F.interpolate(source, size=content.shape[1:], mode="bilinear", antialias=True)[0].clamp(0, 1)

    def results(self) -> Iterator[tuple[str, Tensor]]:
        """``(pair name, (3, H, W) image in [0, 1])`` for each pair of the batch in progress, detached; with
        ``preserve_color: luminance``, in the content's colours (when the batch's contents are at hand)."""
        recolour = self.hparams.preserve_color == "luminance" and self.contents is not None
        for row, (name, image) in enumerate(zip(self.names, self.images.detach())):
            yield name, keep_content_colours(image, self.contents[row].to(image)) if recolour else image

    # --- loss and optimisation ---------------------------------------------------------------------------------
    def training_step(self, batch: PairBatch, batch_idx: int) -> Tensor:
        """The sum of the batch's per-pair losses, so each pair's gradient is its own; logs means over the batch
        (of this process: processes exchange nothing while they optimise)."""
        if not self.names or self.plateau.stopped_at is not None:
            return self.images.sum() * 0.0
        factor = self.factor_at(batch.step)
        losses = self.objective(self.images, factor, batch.step)
        self._losses = {key: losses[key].detach() for key in LOSS_KEYS}
        total = losses["loss"].sum()
        count = len(self.names)
        self.guard.note(torch.isfinite(total))
        # Not prog_bar=True: Lightning would read it from the device at every step; StepProgressBar reads it every N.
        self.log("train/loss", total / count, batch_size=count)
        # Each self.log call costs about 0.5 ms, as much as a 64 px step: log the terms only when the loggers write.
        if (self.global_step + 1) % self.trainer.log_every_n_steps == 0:
            terms = {f"train/{key}": losses[key].mean() for key in LOSS_KEYS[1:]}
            terms.update({f"train/style/{layer}": losses[f"style/{layer}"].mean() for layer in self.style_layers})
            if self.hparams.levels > 1:
                terms["train/scale"] = 1 / factor
            self.log_dict(terms, batch_size=count)
        return total

    def _new_optimizer(self, params: list[nn.Parameter]) -> torch.optim.Optimizer:
        return (self.optimizer or (lambda params: torch.optim.Adam(params, lr=0.02)))(params)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        optimizer = self._new_optimizer([self.images])
        if isinstance(optimizer, torch.optim.LBFGS):
            if str(self.trainer.precision) == "16-mixed":
                raise StyleTransferError("L-BFGS cannot run with --trainer.precision 16-mixed (gradient scaling); use bf16-mixed or 32-true")
            if optimizer.defaults["line_search_fn"] and optimizer.defaults["max_iter"] == 1:
                rank_zero_warn("L-BFGS with a line search and max_iter 1 stalls once a line search returns a zero step; use max_iter > 1 or no line search")
        return optimizer

    def optimizer_step(self, epoch, batch_idx, optimizer, optimizer_closure=None) -> None:
        last, done = self._step_in_batch == self.hparams.steps - 1, self.global_step + 1  # Lightning counts it later
        if self.plateau.stopped_at is not None:
            optimizer_closure()  # Lightning checks that the closure ran; training_step returns a constant
        else:
            # Clamp here, not in a batch-end hook: checkpoint callbacks run before the module's hooks and would
            # otherwise save the unclamped image, so a resumed run would differ from an uninterrupted one.
            if self.guard.good is None:
                self.guard.keep(self.images, self.global_step)  # a batch's first step (or a resume's): good images
            super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)
            self.guard.note(torch.isfinite(self.images).all())  # before the clamp, which would turn inf into 1
            with torch.no_grad():
                self.images.clamp_(0, 1)
            if last or done % self.hparams.check_every_n_steps == 0:
                self.check_finite(done)
                if self.plateau.tolerance and self.names and self.factor_at(self._step_in_batch) == 1:  # at full size
                    self.plateau.update(self._step_in_batch + 1, float(self._losses["loss"].sum()))  # a host read
        if last:
            self.batch_done, self.finished, self.final_losses = True, list(self.results()), self._losses

    def check_finite(self, steps_done: int | None = None) -> None:
        """Raise :class:`NonFiniteError` with the images of the last good check put back if a loss or an image
        went NaN or infinite since then; otherwise remember these images as good, as those after ``steps_done``
        global steps (default: the trainer's count). One host synchronisation (see :class:`FiniteGuard`)."""
        if self.names:
            self.guard.check(self.images, self.global_step if steps_done is None else steps_done, self._losses)

    def on_train_start(self) -> None:
        self.guard.reset()

    def on_train_epoch_end(self) -> None:
        self.trainer.should_stop = True  # the epoch went through every batch of the plan: every pair is done

    def on_train_end(self) -> None:
        count = torch.tensor(float(len(self.skipped)), device=self.device)
        self.skipped_total = int(self.trainer.strategy.reduce(count, reduce_op="sum").item())

    # --- checkpoints -------------------------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Every process's batch in progress (its pairs, images, optimiser state and steps taken); nothing for a
        batch that just finished (its results are on disk). A checkpoint's size depends on the batch and the
        number of processes, not on the number of pairs. It never holds NaN: the images are checked first."""
        self.check_finite()
        if self._restored is not None:  # a resumed run that took no step yet: its checkpoint's batch, untouched
            mine = self._restored
        else:
            going_on = self.names and not self.batch_done
            optimizer = self.trainer.optimizers[0] if self.trainer.optimizers else None
            mine = pack(self.names if going_on else (), self._step_in_batch + 1, self.images, optimizer,
                        self.plateau.state_dict())
        states = [mine]
        if self.trainer.world_size > 1 and dist.is_available() and dist.is_initialized():
            states = [None] * self.trainer.world_size
            dist.all_gather_object(states, mine)
        checkpoint["in_progress"] = states
        checkpoint["state_dict"]["images"] = torch.zeros(0, 3, 1, 1)  # the images are in in_progress

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Keep this process's batch in progress, unchecked and unused until the data module's plan gives that
        batch (:func:`~lightning_style.in_progress.unpack` checks it then, against the batch's pairs and shapes).
        Lightning restores no image and no optimiser state itself: they belong to a batch, not to the run."""
        states = checkpoint.get("in_progress")
        trainer = self._trainer
        rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        self._restored = states[rank] if isinstance(states, list) and len(states) == world else None
        self.images = nn.Parameter(torch.zeros(0, 3, 1, 1))
        checkpoint["state_dict"]["images"] = self.images.data
        checkpoint["optimizer_states"] = []

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path, map_location=None, hparams_file=None, strict=None,
                             weights_only=None, **kwargs) -> "StyleTransfer":
        """Lightning's ``load_from_checkpoint``, always with ``weights_only=True`` and from local files only."""
        if is_remote(checkpoint_path):
            raise StyleTransferError(f"checkpoint {checkpoint_path}: remote checkpoints are not loaded (unpickling one "
                                     "can run code); download it and pass the local file")
        return super().load_from_checkpoint(checkpoint_path, map_location, hparams_file, strict, True, **kwargs)

