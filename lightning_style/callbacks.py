"""Callbacks that observe a run: ``ImageWriter`` saves each pair's image to disk, ``ImageLogger`` sends images and
quality figures to the loggers (W&B, TensorBoard, CSV), ``StepProgressBar`` counts steps, ``StepCheckpoint``
saves every N steps and at the end."""

import signal
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from PIL import Image
from PIL.PngImagePlugin import PngInfo
from pytorch_lightning.callbacks import ModelCheckpoint, TQDMProgressBar
from pytorch_lightning.loggers import TensorBoardLogger, WandbLogger
from torch import Tensor
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

from .errors import StyleTransferError, WriteError
from .files import check_folder, check_outputs, replace_atomically


def to_uint8(image: Tensor) -> np.ndarray:
    """``(3, H, W)`` float image in ``[0, 1]`` -> ``(H, W, 3)`` uint8 array (what W&B and PIL display correctly)."""
    return np.ascontiguousarray((image.detach().float().clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy())


def to_pil(image: Tensor) -> Image.Image:
    """``(3, H, W)`` float image in ``[0, 1]`` -> 8-bit RGB PIL image."""
    return Image.fromarray(to_uint8(image))


def side_by_side(*images: Tensor) -> Tensor:
    """``(3, H_i, W_i)`` images scaled to the first one's height and joined left to right with a 4 px white gap."""
    height = images[0].shape[1]
    gap = torch.ones(3, height, 4)
    parts = []
    for image in images:
        width = max(1, round(image.shape[2] * height / image.shape[1]))
        parts += [F.interpolate(image[None].float().cpu(), size=(height, width), mode="bilinear", antialias=True)[0], gap]
    return torch.cat(parts[:-1], dim=2).clamp(0, 1)


def save_atomically(image: Image.Image, path: Path) -> None:
    """Write ``image`` as an sRGB PNG at ``path``, atomically (see :func:`~lightning_style.files.replace_atomically`)."""
    info = PngInfo()
    info.add(b"sRGB", b"\x00")  # the pixels are sRGB (inputs with a colour profile are converted when read)
    replace_atomically(path, lambda file: image.save(file, format="PNG", pnginfo=info))


class ImageWriter(pl.Callback):
    """Writes each pair's image to ``<dir>/<content-stem>__<style-stem>.png``.

    At the end of fit, every ``every_n_steps`` steps if that is positive, and when the run is interrupted (Ctrl-C)
    or fails after this run has taken a step: an existing output is only ever replaced by an image that this run
    optimised. Files are replaced atomically, as sRGB PNGs. Only global rank 0 writes. The folder and the output
    names are checked before the optimisation starts; if a write still fails at the end (a full disk), the final
    checkpoint is saved first and the run then fails with :class:`~lightning_style.WriteError`.

    Args:
        dir: output folder, created if needed.
        every_n_steps: also write the current images every this many steps (0: only at the end).
    """

    def __init__(self, dir: str = "outputs", every_n_steps: int = 0) -> None:
        self.dir = Path(dir)
        self.every_n_steps = every_n_steps
        self._start_step = None
        self._failed: WriteError | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if trainer.is_global_zero:
            self.check_writable(getattr(trainer.datamodule, "names", ()))

    def check_writable(self, names=()) -> None:
        """Raise unless the folder can be written and each pair's output ``<name>.png`` can be (re)placed."""
        check_folder(self.dir, "--output.dir")
        check_outputs(self.dir, [f"{name}.png" for name in names])

    def write(self, pl_module: pl.LightningModule) -> list[Path]:
        """Write every pair's current image; returns the paths."""
        self.dir.mkdir(parents=True, exist_ok=True)
        paths = []
        for name, image in pl_module.results():
            paths.append(self.dir / f"{name}.png")
            save_atomically(to_pil(image), paths[-1])
        return paths

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start_step, self._failed = trainer.global_step, None  # after a resume, the checkpoint's step

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args) -> None:
        if self.every_n_steps > 0 and trainer.global_step % self.every_n_steps == 0 and trainer.is_global_zero:
            self.write(pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Runs before the checkpoint callbacks' on_train_end: a failed write is raised at on_fit_end, after them.
        if trainer.is_global_zero:
            try:
                self.write(pl_module)
            except OSError as error:
                self._failed = WriteError(f"--output.dir {self.dir}: could not write the images ({error.strerror or error}); "
                                          "the final checkpoint holds them")

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._failed is not None:
            failed, self._failed = self._failed, None
            raise failed

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        optimised = self._start_step is not None and trainer.global_step > self._start_step
        if trainer.is_global_zero and optimised and not isinstance(exception, (StyleTransferError, WriteError)):
            self.write(pl_module)


class StepProgressBar(TQDMProgressBar):
    """Progress bar over optimisation steps, ``step/max_steps`` with the loss, also across a resume.

    Lightning's bar counts batches of the current epoch, which a run resumed from a checkpoint restarts.
    """

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        self._count_steps(trainer)  # a run resumed mid-epoch starts no epoch

    def on_train_epoch_start(self, trainer: pl.Trainer, *_) -> None:
        super().on_train_epoch_start(trainer)
        self._count_steps(trainer)

    def _count_steps(self, trainer: pl.Trainer) -> None:
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


class ImageLogger(pl.Callback):
    """Logs each pair as one picture, content | style(s) | result, with quality figures, every N steps and at the end.

    Images go to W&B (``images/<pair>``, captioned with the pair and step, so each pair's history stays together)
    and TensorBoard; other loggers (CSV) get the figures only: ``quality/ssim/<pair>`` and ``quality/psnr/<pair>``
    (torchmetrics' SSIM and PSNR of the result against the content) and their means ``quality/ssim``,
    ``quality/psnr``. Only global rank 0 logs.

    Args:
        every_n_steps: logging interval in optimisation steps; 0 logs only at the end.
    """

    def __init__(self, every_n_steps: int = 100) -> None:
        self.every_n_steps = every_n_steps
        self._logged_step = -1

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *_) -> None:
        if self.every_n_steps > 0 and trainer.global_step % self.every_n_steps == 0:
            self.log_pairs(trainer, pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.log_pairs(trainer, pl_module)

    @torch.no_grad()
    def log_pairs(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Log every pair's picture and quality figures at the current step (once per step)."""
        step = trainer.global_step
        if not trainer.is_global_zero or not trainer.loggers or step == self._logged_step:
            return
        self._logged_step = step
        figures = {}
        for name, image in pl_module.results():
            pair = pl_module.pairs[name]
            result, content = image[None].float(), pair.content[None].to(image.device)
            figures[f"quality/ssim/{name}"] = structural_similarity_index_measure(result, content, data_range=1.0).item()
            figures[f"quality/psnr/{name}"] = peak_signal_noise_ratio(result, content, data_range=1.0).item()
            picture = to_uint8(side_by_side(pair.content, *pair.styles, image))
            for logger in trainer.loggers:
                if isinstance(logger, WandbLogger):
                    logger.log_image(f"images/{name}", [picture], step=step, caption=[f"{name}, step {step}"])
                elif isinstance(logger, TensorBoardLogger):
                    logger.experiment.add_image(f"images/{name}", picture, step, dataformats="HWC")
        for metric in ("ssim", "psnr"):
            values = [value for key, value in figures.items() if key.startswith(f"quality/{metric}/")]
            figures[f"quality/{metric}"] = sum(values) / len(values)
        for logger in trainer.loggers:
            logger.log_metrics(figures, step=step)


class StepCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` whose ``last.ckpt`` is also written at the end of fit, whatever step that is.

    Lightning's writes it at the end only if it wrote none before, so a run that stops between two
    ``every_n_train_steps`` (for example a resumed one) would keep an older ``last.ckpt``.
    """

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_end(trainer, pl_module)
        if self.save_last and trainer.global_step > 0:
            trainer.save_checkpoint(self.format_checkpoint_name({}, self.CHECKPOINT_NAME_LAST), self.save_weights_only)


class StopOtherProcesses(pl.Callback):
    """When the run fails on global rank 0, stop the processes it launched at once (Lightning's subprocess
    launcher), instead of leaving them waiting for rank 0 at the next collective call until the timeout."""

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        launcher = trainer.strategy.launcher
        if trainer.global_rank == 0 and hasattr(launcher, "procs") and launcher.procs:
            launcher.kill(signal.SIGKILL)
