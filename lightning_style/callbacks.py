"""Callbacks that observe a run: ``ImageWriter`` saves each pair's image to disk; ``StepProgressBar`` counts steps."""

import os
import tempfile
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
from PIL import Image
from pytorch_lightning.callbacks import TQDMProgressBar
from torch import Tensor

from .errors import StyleTransferError


def to_pil(image: Tensor) -> Image.Image:
    """``(3, H, W)`` float image in ``[0, 1]`` -> 8-bit RGB PIL image."""
    array = (image.detach().float().clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(np.ascontiguousarray(array))


def save_atomically(image: Image.Image, path: Path) -> None:
    """Write ``path`` so that readers see the old file or the new one, never half of one."""
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.stem}.", suffix=".png", delete=False) as tmp:
        try:
            image.save(tmp, format="PNG")
        except BaseException:
            os.unlink(tmp.name)
            raise
    os.replace(tmp.name, path)


class ImageWriter(pl.Callback):
    """Writes each pair's image to ``<dir>/<content-stem>__<style-stem>.png``.

    At the end of fit, when it is interrupted (Ctrl-C) or fails, and every ``every_n_steps`` steps if that is
    positive. Files are replaced atomically. Only global rank 0 writes.

    Args:
        dir: output folder, created if needed; checked for writing before the optimisation starts.
        every_n_steps: also write the current images every this many steps (0: only at the end).
    """

    def __init__(self, dir: str = "outputs", every_n_steps: int = 0) -> None:
        self.dir = Path(dir)
        self.every_n_steps = every_n_steps

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if not trainer.is_global_zero:
            return
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            tempfile.TemporaryFile(dir=self.dir).close()
        except OSError as error:
            raise StyleTransferError(f"--output.dir {self.dir}: cannot write there ({error.strerror})") from None

    def write(self, pl_module: pl.LightningModule) -> list[Path]:
        """Write every pair's current image; returns the paths."""
        paths = []
        for name, image in pl_module.results():
            paths.append(self.dir / f"{name}.png")
            save_atomically(to_pil(image), paths[-1])
        return paths

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args) -> None:
        if self.every_n_steps > 0 and trainer.global_step % self.every_n_steps == 0 and trainer.is_global_zero:
            self.write(pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero:
            self.write(pl_module)

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        if trainer.is_global_zero and len(pl_module.images) and not isinstance(exception, StyleTransferError):
            self.write(pl_module)


class StepProgressBar(TQDMProgressBar):
    """Progress bar over optimisation steps, ``step/max_steps`` with the loss, also across a resume.

    Lightning's bar counts batches of the current epoch, which a run resumed from a checkpoint restarts.
    """

    def on_train_epoch_start(self, trainer: pl.Trainer, *_) -> None:
        super().on_train_epoch_start(trainer)
        bar = self.train_progress_bar
        bar.reset(total=trainer.max_steps if trainer.max_steps > 0 else None)
        bar.initial = bar.n = trainer.global_step
        bar.set_description("Stylising")
        bar.refresh()

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *_) -> None:
        step = trainer.global_step
        if self.refresh_rate and (step % self.refresh_rate == 0 or step == trainer.max_steps):
            bar = self.train_progress_bar
            bar.n = step
            bar.set_postfix(self.get_metrics(trainer, pl_module))
