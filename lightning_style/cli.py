"""The ``lightning-style`` command: a ``LightningCLI`` over ``StyleTransfer`` and ``PairDataModule``."""

import hashlib
import logging
import os
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

import torch
from jsonargparse import Namespace
from pytorch_lightning import Trainer
from pytorch_lightning.callbacks import ModelCheckpoint, ProgressBar
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI
from pytorch_lightning.loggers import WandbLogger
from pytorch_lightning.utilities.rank_zero import rank_zero_info

from .callbacks import ImageWriter, StepProgressBar
from .checkpoints import StepCheckpoint, read_checkpoint
from .data import PairDataModule
from .errors import NonFiniteError, OptionError, StyleTransferError, WriteError
from .files import check_folder
from .help import FIT_PARSER, FIT_SUMMARY, MAIN_PARSER, arrange_help
from .image_logger import ImageLogger
from .loggers import SaveConfigToLoggers
from .module import StyleTransfer
from .preview import preview
from .quiet import LIGHTNING_LOG
from .resources import check_memory
from .shards import Shard, find_shard
from .stop import GracefulStop
from .strategy import IndependentDDPStrategy, several_processes
from .summary import launched_by, summary

EXAMPLE_CONTENT, EXAMPLE_STYLE = "examples/content/chelsea.png", "examples/style/swirls.png"
# The package's defaults are those of configs/default.yaml: a run ends when every pair had --data.steps steps.
TRAINER_DEFAULTS = {"max_epochs": -1, "devices": 1, "precision": "32-true", "log_every_n_steps": 10,
                    "enable_model_summary": False, "benchmark": True}  # cuDNN picks its fastest kernels per image shape
# Trainer options that have no meaning here (no validation, no sampler, no accumulation: a step is a step of every
# pair in the batch) or that would break the plan of which pair is optimised at which step.
UNUSED_TRAINER_OPTIONS = {
    "fast_dev_run", "min_epochs", "min_steps", "limit_train_batches", "limit_val_batches", "limit_test_batches",
    "limit_predict_batches", "overfit_batches", "val_check_interval", "check_val_every_n_epoch",
    "num_sanity_val_steps", "accumulate_grad_batches", "inference_mode", "use_distributed_sampler",
    "reload_dataloaders_every_n_epochs", "sync_batchnorm", "model_registry",
    "gradient_clip_val", "gradient_clip_algorithm",  # a norm over a batch would tie its pairs together
}


class StyleTransferCLI(LightningCLI):
    """``LightningCLI`` with ``--output`` (:class:`ImageWriter`) and ``--images`` (:class:`ImageLogger`) groups, a
    step progress bar, the run's files together under ``--output.dir``, the style options first in ``--help``,
    and input checks before anything runs."""

    def __init__(self, *args, parser_kwargs: dict | None = None, trainer_defaults: dict | None = None,
                 **kwargs) -> None:
        self._args = list(kwargs.get("args") or [])  # for the summary's command that goes on
        self._output, self._started = Path("outputs"), time.monotonic()
        parser_kwargs = {**MAIN_PARSER, **(parser_kwargs or {})}
        parser_kwargs["fit"] = {**FIT_PARSER, **parser_kwargs.get("fit", {})}
        trainer_defaults = {**TRAINER_DEFAULTS, **(trainer_defaults or {})}
        kwargs.setdefault("seed_everything_default", 0)  # reproducible by default, as --model.init noise promises
        super().__init__(*args, parser_kwargs=parser_kwargs, trainer_defaults=trainer_defaults, **kwargs)

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        """Only ``fit``: style transfer optimises, it has nothing to validate, test or predict. Checkpoints are
        always read with ``weights_only`` (:mod:`lightning_style.checkpoints`), so that option is not offered."""
        return {"fit": LightningCLI.subcommands()["fit"] | {"weights_only"}}

    def add_core_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        """The Trainer's options without :data:`UNUSED_TRAINER_OPTIONS`, then the data's and the model's."""
        parser.add_class_arguments(self.trainer_class, "trainer", fail_untyped=False, instantiate=False,
                                   sub_configs=True, skip=UNUSED_TRAINER_OPTIONS)
        parser.set_defaults({f"trainer.{key}": value for key, value in self.trainer_defaults.items()
                             if key != "callbacks"})
        parser.add_lightning_class_args(self.datamodule_class, "data")  # the order of instantiation: help.FIRST
        parser.add_class_arguments(self.model_class, "model", fail_untyped=False, sub_configs=True,
                                   skip={"features"})  # a ready VGG is for Python callers

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument("--float32_matmul_precision", type=Literal["highest", "high", "medium"], default="high",
                            help="high: TF32 for the Gram matrices on CUDA GPUs (as for convolutions); highest: "
                                 "full float32")
        parser.add_argument("--plan", type=bool, default=False,
                            help="print the job's plan (pairs, steps, memory, time) and stop")
        parser.add_lightning_class_args(ImageWriter, "output")
        parser.add_lightning_class_args(ImageLogger, "images")
        parser.set_defaults({
            "data.content": EXAMPLE_CONTENT,
            "data.style": EXAMPLE_STYLE,
            "model.optimizer": {"class_path": "torch.optim.Adam", "init_args": {"lr": 0.02}},
        })

    def _add_subcommands(self, parser: LightningArgumentParser, **kwargs) -> None:
        super()._add_subcommands(parser, **kwargs)
        for choice in parser._subcommands_action._choices_actions:  # not the Trainer's "Runs the full optimization..."
            choice.help = FIT_SUMMARY

    def _prepare_subcommand_parser(self, klass: type, subcommand: str, **kwargs) -> LightningArgumentParser:
        parser = super()._prepare_subcommand_parser(klass, subcommand, **kwargs)
        arrange_help(parser)
        return parser

    def instantiate_classes(self) -> None:
        with self._in_flags():
            super().instantiate_classes()

    def _run_subcommand(self, subcommand: str) -> None:
        with self._in_flags():
            super()._run_subcommand(subcommand)

    @contextmanager
    def _in_flags(self) -> Iterator[None]:
        """Word a class's :class:`OptionError` as the command line's flag for that argument (``command_line``)."""
        try:
            yield
        except OptionError as error:
            if flag := self._flag(error):
                error.command_line = error.as_flag(flag)
            raise

    def _flag(self, error: OptionError) -> str | None:
        """The flag that fed ``error.option``, from the parsed config: the owner's group (``--model`` for
        ``StyleTransfer``), else the one option of that name (``--model.pooling`` feeds ``VGGFeatures(pooling)``)."""
        config = self.config[self.config.subcommand]
        groups = {"model": self.model_class, "data": self.datamodule_class, "trainer": self.trainer_class,
                  "output": ImageWriter, "images": ImageLogger}
        own = [group for group, cls in groups.items() if cls.__name__ == error.owner]
        if own and error.option in config[own[0]]:
            return f"--{own[0]}.{error.option}"
        keys = config.keys()  # every nested option, dotted: model.pooling, trainer.logger.init_args.save_dir
        named = [key for key in keys if key.rsplit(".", 1)[-1] == error.option and "." in key]
        return f"--{named[0]}" if len(named) == 1 else None

    def before_instantiate_classes(self) -> None:
        """Put the run's logs and checkpoints under ``--output.dir`` unless the config says otherwise, and say
        where the example images are when the defaults are used away from the repository."""
        config = self.config[self.config.subcommand]
        torch.set_float32_matmul_precision(config.float32_matmul_precision)
        out = config.output.dir
        for option, example in [("content", EXAMPLE_CONTENT), ("style", EXAMPLE_STYLE)]:
            if config.data[option] == example and not Path(example).exists():
                raise StyleTransferError(f"--data.{option}: the default, {example}, is not here: it ships with the "
                                         f"lightning-style repository (run from its root), or give your own image")
        if config.trainer.default_root_dir is None:
            config.trainer.default_root_dir = out
        shard = self._shard(config)
        if config.trainer.logger in (None, True):
            config.trainer.logger = Namespace(class_path="pytorch_lightning.loggers.CSVLogger", init_args=Namespace(
                save_dir=out, name=f"logs/{shard.label}" if shard.count > 1 else "logs"))
        loggers = config.trainer.logger if isinstance(config.trainer.logger, list) else [config.trainer.logger]
        for logger in loggers:
            arguments = logger.get("init_args") if isinstance(logger, Namespace) else None
            if arguments is not None and "save_dir" in arguments and arguments.save_dir is None:
                arguments.save_dir = out
            if arguments is not None and shard.count > 1 and logger.class_path.endswith("WandbLogger"):
                # The shards of a job: one W&B group (the output folder), one run per shard.
                folder = Path(out).absolute()
                digest = hashlib.blake2b(str(folder).encode(), digest_size=3).hexdigest()
                arguments.group = arguments.get("group") or f"{folder.name}-{digest}"
                arguments.name = arguments.get("name") or shard.label

    def instantiate_trainer(self, **kwargs) -> Trainer:
        """The trainer, with a :class:`StepProgressBar` unless the bar is off or the config names another, a
        :class:`StepCheckpoint` (``<output.dir>/checkpoints/last.ckpt`` every 100 steps, at batch ends and at the
        end) unless checkpointing is off or the config names another, and a :class:`GracefulStop` (signals);
        ``strategy: ddp``, or ``auto`` with several devices or nodes, becomes :class:`IndependentDDPStrategy`
        (processes that never exchange images)."""
        config = self.config_init[self.subcommand]["trainer"]
        callbacks, added = config.get("callbacks") or [], [GracefulStop()]
        if config.get("enable_progress_bar") is not False and not any(isinstance(c, ProgressBar) for c in callbacks):
            added.append(StepProgressBar())
        checkpoints = any(isinstance(c, ModelCheckpoint) for c in callbacks)
        if config.get("enable_checkpointing") is not False and not checkpoints:
            added.append(StepCheckpoint())
        self.trainer_defaults = {**self.trainer_defaults, "callbacks": added}
        strategy = config.get("strategy") or "auto"
        several = several_processes(config.get("devices"), config.get("num_nodes"))
        if strategy == "ddp" or strategy == "auto" and several:
            config["strategy"] = IndependentDDPStrategy()  # Lightning's auto would pick DDP, which averages gradients
        return super().instantiate_trainer(**kwargs)

    def _parse_ckpt_path(self) -> None:
        """Resolve ``--ckpt_path last`` and refuse a bad checkpoint in one line. Unlike Lightning's, nothing of the
        checkpoint becomes configuration (its hyper-parameters could name any class to instantiate): the options
        come from the command line and the config files, and batches in progress made with other options start
        again (see :meth:`PairDataModule.train_dataloader`)."""
        config = self.config.get(self.config.get("subcommand") or "")
        if config and config.get("ckpt_path") == "last":
            last = (self._checkpoints(config.output.dir, self._shard(config)) / "last.ckpt").absolute()
            if last.exists():
                config["ckpt_path"] = str(last)
            else:
                rank_zero_info(f"--ckpt_path last: no checkpoint in {last.parent} yet, starting from the beginning")
                config["ckpt_path"] = None
        if config and config.get("ckpt_path"):
            read_checkpoint(config["ckpt_path"], mmap=True)  # a look at its fields; the fit reads it again

    def _shard(self, config: Namespace) -> Shard:
        """The part of the job this command runs (from ``--data.shard``/``--data.shards`` or the environment)."""
        with self._in_flags():
            return find_shard(config.data.shard, config.data.shards)

    @staticmethod
    def _checkpoints(out: str | Path, shard: Shard) -> Path:
        """``<output.dir>/checkpoints``, and a folder in it per shard: each shard goes on from its own checkpoint."""
        folder = Path(out) / "checkpoints"
        return folder / shard.label if shard.count > 1 else folder

    def before_fit(self) -> None:
        # Every check before anything is written or decoded (a fit would create the loggers' folders first): the
        # model's and the writer's own (the fit does not repeat them), then memory and the other folders.
        trainer, data, model = self.trainer, self.datamodule, self.model
        if trainer.max_steps == 0:
            raise StyleTransferError("--trainer.max_steps 0: no step would be taken; leave it unset (-1) or give a cap")
        model.check_fit(trainer, data)
        contents, styles = data.shapes()
        largest = sorted(contents, key=lambda shape: shape[0] * shape[1])[-data.batch_size :]  # a batch at a time
        check_memory(model.features, largest, styles, trainer.strategy.root_device)
        for writer in (c for c in trainer.callbacks if isinstance(c, ImageWriter)):  # the others follow its folder
            self._output = writer.dir
            if trainer.is_global_zero:
                writer.check_writable(data.names, data.clips)
        check_folder(trainer.default_root_dir, "Trainer", "default_root_dir")
        for logger in trainer.loggers:
            if getattr(logger, "save_dir", None):
                check_folder(logger.save_dir, type(logger).__name__, "save_dir")
        for callback in trainer.checkpoint_callbacks:
            if callback.dirpath is None:  # the same folder for every run of the command: --ckpt_path last
                callback.dirpath = str(self._checkpoints(self._output, data.shard).absolute())
        if data.shard.count > 1 and trainer.is_global_zero:
            print(f"lightning-style: {data.shard} (from {data.shard.source}): {len(data.names)} of the job's "
                  f"{len(data.job_names)} pairs", flush=True)
        data.setup("fit")
        if self.config[self.subcommand].plan:
            writer = next(c for c in trainer.callbacks if isinstance(c, ImageWriter))
            lines = preview(trainer, model, data, writer)
            if trainer.is_global_zero:
                print("\n".join(lines), flush=True)
            sys.exit(0)
        self._started = time.monotonic()

    def after_fit(self) -> None:
        """Say what the run did and what the job has done (read from the output folder), how to go on when
        something is left, and exit with 128 + the signal's number after a signal, 1 when pairs were skipped."""
        trainer = self.trainer
        stop = next((c for c in trainer.callbacks if isinstance(c, GracefulStop)), None)
        writer = next((c for c in trainer.callbacks if isinstance(c, ImageWriter)), None)
        signum = stop.signal if stop else None
        if trainer.is_global_zero and writer is not None:
            last = next((Path(c.dirpath) / "last.ckpt" for c in trainer.checkpoint_callbacks if c.dirpath), None)
            data = self.datamodule
            lines = summary(writer, signum, time.monotonic() - self._started, self._args, last, data.shard,
                            data.job_names, launched_by(os.environ))
            print("\n".join(lines), flush=True)
        if any(isinstance(logger, WandbLogger) for logger in trainer.loggers):
            import wandb

            wandb.finish()  # this process's run, if it has one: a later job here (a notebook's) gets a run of its own
        if signum:
            sys.exit(128 + signum)
        if writer is not None and writer.skipped:
            sys.exit(1)


def _check_config_files(args: list[str]) -> None:
    """Refuse a ``--config`` file that is not UTF-8 text in one line (jsonargparse would show a traceback)."""
    for flag, value in zip(args, args[1:], strict=False):  # each argument with the next
        if flag in ("--config", "-c") and os.path.isfile(value):
            try:
                with open(value, encoding="utf-8") as file:
                    file.read()
            except UnicodeDecodeError as error:
                raise StyleTransferError(f"--config {value}: not UTF-8 text ({error.reason} at byte "
                                         f"{error.start})") from None


def _not_nothing_to_do(record: logging.LogRecord) -> bool:
    """Leave out Lightning's words for a job with nothing left to do: the summary says it."""
    return not str(record.msg).startswith("`Trainer.fit` stopped: No training batches")


def main(args: list[str] | None = None) -> None:
    """Run the command line (``args`` replaces ``sys.argv[1:]``, for tests and notebooks).

    Bad input exits with one ``lightning-style: error: ...`` line; ``LIGHTNING_STYLE_DEBUG=1`` shows the traceback.
    """
    warnings.filterwarnings("ignore", ".*args parameter is intended to run from within Python.*")
    warnings.filterwarnings("ignore", ".*across ranks is zero.*")  # every pair is done already: the summary says so
    if _not_nothing_to_do not in LIGHTNING_LOG.filters:
        LIGHTNING_LOG.addFilter(_not_nothing_to_do)
    args = sys.argv[1:] if args is None else list(args)
    try:
        _check_config_files(args)
        StyleTransferCLI(
            StyleTransfer,
            PairDataModule,
            auto_configure_optimizers=False,  # the model builds its optimizer over the images, once they exist
            save_config_callback=SaveConfigToLoggers,
            save_config_kwargs={"overwrite": True},
            args=args,
        )
    except (StyleTransferError, NonFiniteError, WriteError) as error:
        if os.environ.get("LIGHTNING_STYLE_DEBUG"):
            raise
        sys.exit(f"lightning-style: error: {getattr(error, 'command_line', None) or error}")
