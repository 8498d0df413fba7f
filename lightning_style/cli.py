"""The ``lightning-style`` command: a ``LightningCLI`` over ``StyleTransfer`` and ``PairDataModule``."""

import json
import os
import sys
import warnings

from pytorch_lightning import Trainer
from pytorch_lightning.callbacks import ProgressBar
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback

from .callbacks import ImageLogger, ImageWriter, StepProgressBar
from .data import PairDataModule
from .errors import NonFiniteError, StyleTransferError
from .module import StyleTransfer


class SaveConfigToLoggers(SaveConfigCallback):
    """Writes ``config.yaml`` to the log folder and records the resolved config as each logger's hyper-parameters
    (the W&B run config), so runs can be compared by any option."""

    def save_config(self, trainer: Trainer, pl_module, stage: str) -> None:
        config = json.loads(self.parser.dump(self.config, format="json", skip_none=False))
        config.pop("config", None)  # the config files' paths
        for logger in trainer.loggers:
            logger.log_hyperparams(config)


class StyleTransferCLI(LightningCLI):
    """``LightningCLI`` with ``--output`` (:class:`ImageWriter`) and ``--images`` (:class:`ImageLogger`) groups, a
    step progress bar, and input checks before anything runs."""

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        """Only ``fit``: style transfer optimises, it has nothing to validate, test or predict."""
        return {"fit": LightningCLI.subcommands()["fit"]}

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_lightning_class_args(ImageWriter, "output")
        parser.add_lightning_class_args(ImageLogger, "images")

    def instantiate_trainer(self, **kwargs) -> Trainer:
        """The trainer, with a :class:`StepProgressBar` unless the bar is off or the config names another."""
        config = self.config_init[self.subcommand]["trainer"]
        callbacks = config.get("callbacks") or []
        if config.get("enable_progress_bar") is not False and not any(isinstance(c, ProgressBar) for c in callbacks):
            self.trainer_defaults = {**self.trainer_defaults, "callbacks": [StepProgressBar()]}
        return super().instantiate_trainer(**kwargs)

    def before_fit(self) -> None:
        # Decode every image and check its size now, so that bad input fails before anything is written.
        self.datamodule.setup("fit")
        self.datamodule.check_min_size(self.model.min_image_size)
        for callback in self.trainer.callbacks:
            if isinstance(callback, ImageWriter) and self.trainer.is_global_zero:
                callback.check_writable()


def main(args: list[str] | None = None) -> None:
    """Run the command line (``args`` replaces ``sys.argv[1:]``, for tests and notebooks).

    Bad input exits with one ``lightning-style: error: ...`` line; ``LIGHTNING_STYLE_DEBUG=1`` shows the traceback.
    """
    # Expected here: the train loader only counts steps (workers would not help), and the VGG is frozen in eval mode.
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*module\\(s\\) in eval mode.*")
    try:
        StyleTransferCLI(
            StyleTransfer,
            PairDataModule,
            auto_configure_optimizers=False,  # the model builds its optimizer over the images, once they exist
            save_config_callback=SaveConfigToLoggers,
            save_config_kwargs={"overwrite": True},
            args=args,
        )
    except (StyleTransferError, NonFiniteError) as error:
        if os.environ.get("LIGHTNING_STYLE_DEBUG"):
            raise
        sys.exit(f"lightning-style: error: {error}")
