"""Callbacks that observe a run: ``ImageWriter`` saves each pair's image to disk when its batch finishes,
``ImageLogger`` sends pictures and quality figures to the loggers (W&B, TensorBoard, CSV), ``StepProgressBar``
counts steps and pairs, ``StepCheckpoint`` saves every N steps and at the end."""

from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
import torch.distributed as dist
import torch.nn.functional as F
from PIL import Image
from PIL.PngImagePlugin import PngInfo
from pytorch_lightning.callbacks import ModelCheckpoint, TQDMProgressBar
from pytorch_lightning.loggers import TensorBoardLogger, WandbLogger
from torch import Tensor
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

from .errors import NonFiniteError, StyleTransferError, WriteError
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
    """Writes each pair's image to ``<dir>/<content-stem>__<style-stem>.png`` as soon as its batch finishes.

    Every process writes the pairs it optimised (no image passes between processes). Also every ``every_n_steps``
    steps if that is positive (the batch in progress), at the end of a run stopped mid-batch (``max_steps``), and
    when the run is interrupted (Ctrl-C) or fails after this run has taken a step: an existing output is only
    ever replaced by an image that this run optimised. Files are replaced atomically, as sRGB PNGs. The folder
    and the output names are checked before the optimisation starts. If a write still fails (a full disk), the
    run stops after that step's checkpoint, which holds the images, and ends with :class:`~lightning_style.WriteError`;
    the same command with ``--ckpt_path last`` then writes them.

    Args:
        dir: output folder, created if needed.
        every_n_steps: also write the current images every this many steps (0: only when a batch finishes).
    """

    def __init__(self, dir: str = "outputs", every_n_steps: int = 0) -> None:
        self.dir = Path(dir)
        self.every_n_steps = every_n_steps
        self._start_step = None
        self._written: tuple[str, ...] = ()
        self._failed: WriteError | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if trainer.is_global_zero:
            self.check_writable(getattr(trainer.datamodule, "names", ()))

    def check_writable(self, names=()) -> None:
        """Raise unless the folder can be written and each pair's output ``<name>.png`` can be (re)placed."""
        check_folder(self.dir, "--output.dir")
        check_outputs(self.dir, [f"{name}.png" for name in names])

    def write(self, pairs) -> list[Path]:
        """Write ``(name, image)`` pairs; returns the paths."""
        self.dir.mkdir(parents=True, exist_ok=True)
        paths = []
        for name, image in pairs:
            paths.append(self.dir / f"{name}.png")
            save_atomically(to_pil(image), paths[-1])
        return paths

    def _write_or_stop(self, trainer: pl.Trainer, pairs) -> None:
        try:
            self.write(pairs)
            failed = False
        except OSError as error:
            self._failed = WriteError(f"--output.dir {self.dir}: could not write the images ({error.strerror or error}); "
                                      "the last checkpoint holds them: free the space and run the same command "
                                      "with --ckpt_path last")
            failed = True
        # Every process finishes its batch at the same step: they agree to stop together, after this checkpoint.
        if trainer.strategy.reduce_boolean_decision(failed, all=False):
            trainer.should_stop = True

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start_step, self._failed, self._written = trainer.global_step, None, ()
        restored = list(pl_module.results())  # a resumed run's batch in progress: written if its files are missing
        if restored and not all((self.dir / f"{name}.png").exists() for name, _ in restored):
            self.write(restored)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args) -> None:
        if pl_module.batch_done:
            self._write_or_stop(trainer, pl_module.finished)
            self._written = tuple(name for name, _ in pl_module.finished)
        elif self.every_n_steps > 0 and trainer.global_step % self.every_n_steps == 0:
            pl_module.check_finite()  # never a NaN image on disk
            self.write(pl_module.results())

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if pl_module.names and pl_module.names != self._written and trainer.global_step > self._start_step:
            pl_module.check_finite()
            self.write(pl_module.results())  # a run stopped mid-batch (max_steps): its current images

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._failed is not None:
            failed, self._failed = self._failed, None
            raise failed

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        # The images of the step that was interrupted, unless they went NaN since the last check: then those of
        # the last good check (global step images_step), written only if this run optimised them.
        step = trainer.global_step
        if isinstance(exception, NonFiniteError):
            step = exception.images_step
        elif pl_module.names:
            try:
                pl_module.check_finite()
            except NonFiniteError as error:
                step = error.images_step
        optimised = self._start_step is not None and step is not None and step > self._start_step
        if optimised and pl_module.names != self._written and not isinstance(exception, (StyleTransferError, WriteError)):
            self.write(pl_module.results())


class StepProgressBar(TQDMProgressBar):
    """Progress bar over optimisation steps, ``step/total`` with the loss and ``pairs=done/all``, also across a
    resume (Lightning's bar counts batches of the current epoch, which a resumed run restarts).

    Args:
        refresh_rate: move the bar every this many steps (0: no bar).
        metrics_every_n_steps: show the loss every this many steps: reading it makes the host wait for the
            device, which a GPU step of a few milliseconds should not do every step.
        kwargs: Lightning's ``TQDMProgressBar``'s.
    """

    def __init__(self, refresh_rate: int = 1, metrics_every_n_steps: int = 10, **kwargs) -> None:
        super().__init__(refresh_rate=refresh_rate, **kwargs)
        self.metrics_every_n_steps, self._metrics_step = max(1, metrics_every_n_steps), 0

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        self._count_steps(trainer)  # a run resumed mid-epoch starts no epoch

    def on_train_epoch_start(self, trainer: pl.Trainer, *_) -> None:
        super().on_train_epoch_start(trainer)
        self._count_steps(trainer)

    @staticmethod
    def _total(trainer: pl.Trainer) -> int | None:
        totals = [n for n in (trainer.max_steps, trainer.num_training_batches) if 0 < n < float("inf")]
        return min(totals) if totals else None

    def _count_steps(self, trainer: pl.Trainer) -> None:
        bar = self.train_progress_bar
        bar.reset(total=self._total(trainer))
        bar.initial = bar.n = trainer.global_step
        bar.set_description("Stylising")
        bar.refresh()

    def get_metrics(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict:
        metrics = {key: value for key, value in super().get_metrics(trainer, pl_module).items() if key != "v_num"}
        if (loss := trainer.callback_metrics.get("train/loss")) is not None:
            metrics["train/loss"] = f"{loss.item():.3g}"  # the module logs it without prog_bar (see there)
        if hasattr(trainer.datamodule, "progress"):
            done, total = trainer.datamodule.progress(trainer.global_step)
            metrics["pairs"] = f"{done}/{total}"
        return metrics

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        if self._train_progress_bar is not None:
            self._train_progress_bar.close()  # end its line: the error message goes on a line of its own

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *_) -> None:
        step, total = trainer.global_step, self._total(trainer)
        if self.refresh_rate and (step % self.refresh_rate == 0 or step == total):
            bar = self.train_progress_bar
            if step - self._metrics_step >= self.metrics_every_n_steps or step == total:  # reading waits for the device
                bar.set_postfix(self.get_metrics(trainer, pl_module), refresh=False)
                self._metrics_step = step
            bar.update(step - bar.n)  # tqdm redraws at most every 0.1 s


class ImageLogger(pl.Callback):
    """Pictures and quality figures for the dashboards, usable with thousands of pairs.

    Every ``every_n_steps`` steps, the batch in progress (global rank 0's) as one picture per pair, content |
    style(s) | result, under the single key ``images/batch`` (W&B, captioned with the pair and step; TensorBoard),
    with ``quality/ssim`` and ``quality/psnr`` (torchmetrics' SSIM and PSNR of the results against the contents,
    means over the batch) for every logger. When batches finish, their pairs (from every process: small
    thumbnails, gathered then) become rows of the W&B table ``pairs``: content, style, result, final losses, SSIM,
    PSNR, logged incrementally; other loggers get ``quality/final_ssim`` and ``quality/final_psnr``.

    Args:
        every_n_steps: interval for the batch in progress in optimisation steps; 0 logs only finished pairs.
        thumbnail: the longer side, in pixels, of the table's pictures.
    """

    COLUMNS = ["pair", "content", "style", "result", "loss", "content_loss", "style_loss", "ssim", "psnr"]

    def __init__(self, every_n_steps: int = 100, thumbnail: int = 256) -> None:
        self.every_n_steps, self.thumbnail = every_n_steps, thumbnail
        self._table = None

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *_) -> None:
        if self.every_n_steps > 0 and trainer.global_step % self.every_n_steps == 0:
            self.log_batch(trainer, pl_module)
        if pl_module.batch_done and trainer.loggers:
            self.log_finished(trainer, pl_module)

    @torch.no_grad()
    def log_batch(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Log the batch in progress: one picture per pair under one key, and its mean quality figures."""
        if not trainer.is_global_zero or not trainer.loggers or not pl_module.names:
            return
        pl_module.check_finite()  # no NaN picture on the dashboards
        step, results = trainer.global_step, list(pl_module.results())
        images = torch.stack([image for _, image in results]).float()
        contents = pl_module.contents.to(images)
        figures = {"quality/ssim": structural_similarity_index_measure(images, contents, data_range=1.0).item(),
                   "quality/psnr": peak_signal_noise_ratio(images, contents, data_range=1.0).item()}
        pictures = [to_uint8(side_by_side(content, *styles, image))
                    for (_, image), content, styles in zip(results, pl_module.contents, pl_module.styles)]
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_image("images/batch", pictures, step=step, caption=[f"{name}, step {step}" for name, _ in results])
            elif isinstance(logger, TensorBoardLogger):
                logger.experiment.add_images("images/batch", np.stack(pictures), step, dataformats="NHWC")
            logger.log_metrics(figures, step=step)

    @torch.no_grad()
    def log_finished(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Gather the pairs that every process just finished (thumbnails and figures) and log them on rank 0."""
        rows = []
        for row, (name, image) in enumerate(pl_module.finished):
            content, styles = pl_module.contents[row], pl_module.styles[row]
            result, reference = image[None].float(), content[None].to(image)
            losses = {key: value[row].item() for key, value in pl_module.final_losses.items()}
            rows.append([name, *(self._thumb(picture) for picture in (content, styles[0], image)),
                         losses["loss"], losses["content"], losses["style"],
                         structural_similarity_index_measure(result, reference, data_range=1.0).item(),
                         peak_signal_noise_ratio(result, reference, data_range=1.0).item()])
        if trainer.world_size > 1 and dist.is_available() and dist.is_initialized():
            gathered = [None] * trainer.world_size
            dist.all_gather_object(gathered, rows)
            rows = [row for part in gathered for row in part]
        if not trainer.is_global_zero or not rows:
            return
        step = trainer.global_step
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                import wandb

                if self._table is None:
                    self._table = wandb.Table(columns=self.COLUMNS, log_mode="INCREMENTAL")
                for row in rows:
                    self._table.add_data(*row[:1], *(wandb.Image(picture) for picture in row[1:4]), *row[4:])
                logger.experiment.log({"pairs": self._table, "trainer/global_step": step})
            ssim, psnr = (sum(row[k] for row in rows) / len(rows) for k in (7, 8))
            logger.log_metrics({"quality/final_ssim": ssim, "quality/final_psnr": psnr}, step=step)

    def _thumb(self, image: Tensor) -> np.ndarray:
        height, width = image.shape[-2:]
        scale = min(1.0, self.thumbnail / max(height, width))
        small = F.interpolate(image[None].float().cpu(), scale_factor=scale, mode="bilinear", antialias=True)[0] if scale < 1 else image
        return to_uint8(small)


class StepCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` whose ``last.ckpt`` is also written at the end of fit, whatever step that is.

    Lightning's writes it at the end only if it wrote none before, so a run that stops between two
    ``every_n_train_steps`` (for example a resumed one) would keep an older ``last.ckpt``. The defaults are the
    command line's: ``last.ckpt`` every 100 steps, no other checkpoint kept. Other arguments are Lightning's.
    """

    def __init__(self, every_n_train_steps: int = 100, save_top_k: int = 0, save_last: bool = True, **kwargs) -> None:
        super().__init__(every_n_train_steps=every_n_train_steps, save_top_k=save_top_k, save_last=save_last, **kwargs)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_end(trainer, pl_module)
        if self.save_last and trainer.global_step > 0:
            trainer.save_checkpoint(self.format_checkpoint_name({}, self.CHECKPOINT_NAME_LAST), self.save_weights_only)

