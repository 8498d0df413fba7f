"""``ImageLogger``: pictures and quality figures of a run for the dashboards (W&B, TensorBoard, CSV)."""

from dataclasses import dataclass, fields

import numpy as np
import pytorch_lightning as pl
import torch
import torch.distributed as dist
import torch.nn.functional as F
from pytorch_lightning.loggers import TensorBoardLogger, WandbLogger
from torch import Tensor
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

from .batch import BatchResult, PairResult
from .callbacks import ImageWriter, side_by_side, to_uint8


@dataclass(frozen=True)
class Row:
    """A row of the W&B table ``pairs``: its columns, in order."""

    pair: str
    content: np.ndarray
    style: np.ndarray
    result: np.ndarray
    loss: float
    content_loss: float
    style_loss: float
    ssim: float
    psnr: float


class ImageLogger(pl.Callback):
    """Pictures and quality figures for the dashboards, usable with thousands of pairs.

    Every ``every_n_steps`` steps, and once for each batch (at its first NaN check past half-way) if its steps are
    fewer, the batch in progress (global rank 0's, at its last check) as one picture per pair, content |
    style(s) | result, under the single key ``images/batch`` (W&B, captioned with the pair and step; TensorBoard),
    with ``quality/ssim`` and ``quality/psnr`` (torchmetrics' SSIM and PSNR of the results against the contents,
    means over the batch) for every logger. When batches finish, their pairs (from every process: small
    thumbnails, gathered then) become rows of the W&B table ``pairs``: content, style, result, final losses, SSIM,
    PSNR, logged incrementally, and their results a captioned list of pictures under ``images/finished`` (media
    files of the run, so that offline runs hold them too); other loggers get ``quality/final_ssim`` and
    ``quality/final_psnr``. A clip's result (``<clip>.mp4``, which :class:`~lightning_style.callbacks.ImageWriter`
    encodes when its last frame is done) goes to W&B as a video under ``videos/finished``, captioned with the pair.

    Args:
        every_n_steps: interval for the batch in progress in optimisation steps; 0 logs only finished pairs.
        thumbnail: the longer side, in pixels, of the table's pictures.
    """

    def __init__(self, *, every_n_steps: int = 100, thumbnail: int = 256) -> None:
        self.every_n_steps, self.thumbnail = every_n_steps, thumbnail
        self._table = None
        self._shown: tuple[str, ...] = ()  # the last batch in progress logged
        self._clips: set[str] = set()  # clips whose last frame is done, to log once their video is written

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *_) -> None:
        snapshot = pl_module.snapshot()
        due = self.every_n_steps > 0 and trainer.global_step % self.every_n_steps == 0
        # A batch shorter than every_n_steps is shown once too, at its first check past half-way.
        halfway = (self.every_n_steps > 0 and snapshot is not None and not snapshot.complete
                   and snapshot.names != self._shown and 2 * snapshot.step >= snapshot.steps)
        if due or halfway:
            self.log_batch(trainer, snapshot)
            self._shown = snapshot.names if snapshot is not None else self._shown
        if pl_module.result is not None and trainer.loggers:
            self.log_finished(trainer, pl_module.result)
        if self._clips:
            self.log_clips(trainer)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.log_clips(trainer)
        self._clips.clear()  # a video that is not there (another node's disk) is not waited for

    def log_clips(self, trainer: pl.Trainer) -> None:
        """Log the videos of the clips finished so far that the output folder holds (W&B only)."""
        writer = next((c for c in trainer.callbacks if isinstance(c, ImageWriter)), None)
        for clip in sorted(self._clips):
            path = writer.record.clip_path(clip) if writer is not None else None
            if path is None or not path.is_file():
                continue
            self._clips.discard(clip)
            for logger in trainer.loggers:
                if isinstance(logger, WandbLogger):
                    import wandb

                    logger.experiment.log({"videos/finished": wandb.Video(str(path), caption=clip, format="mp4"),
                                           "trainer/global_step": trainer.global_step})

    @torch.no_grad()
    def log_batch(self, trainer: pl.Trainer, snapshot: BatchResult | None) -> None:
        """Log the batch in progress (its last good check): one picture per pair under one key, and its mean
        quality figures."""
        if not trainer.is_global_zero or not trainer.loggers or snapshot is None:
            return
        images = snapshot.images.float()
        contents = snapshot.contents.to(images)
        figures = {"quality/ssim": structural_similarity_index_measure(images, contents, data_range=1.0).item(),
                   "quality/psnr": peak_signal_noise_ratio(images, contents, data_range=1.0).item()}
        pictures = [to_uint8(side_by_side(pair.content, *pair.styles, pair.image)) for pair in snapshot]
        captions = [f"{name}, step {snapshot.step}" for name in snapshot.names]
        step = trainer.global_step
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_image("images/batch", pictures, step=step, caption=captions)
            elif isinstance(logger, TensorBoardLogger):
                logger.experiment.add_images("images/batch", np.stack(pictures), step, dataformats="NHWC")
            logger.log_metrics(figures, step=step)

    def row(self, pair: PairResult) -> Row:
        """The ``pairs`` table's row of a finished pair: thumbnails, final losses, SSIM and PSNR against its content."""
        result, reference = pair.image[None].float(), pair.content[None].to(pair.image).float()
        return Row(pair.name, self._thumb(pair.content), self._thumb(pair.styles[0]), self._thumb(pair.image),
                   pair.losses["loss"], pair.losses["content"], pair.losses["style"],
                   structural_similarity_index_measure(result, reference, data_range=1.0).item(),
                   peak_signal_noise_ratio(result, reference, data_range=1.0).item())

    @torch.no_grad()
    def log_finished(self, trainer: pl.Trainer, result: BatchResult) -> None:
        """Gather the pairs that every process just finished (thumbnails and figures) and log them on rank 0."""
        rows = [self.row(pair) for pair in result]
        if trainer.world_size > 1 and dist.is_available() and dist.is_initialized():
            gathered = [None] * trainer.world_size
            dist.all_gather_object(gathered, rows)
            rows = [row for part in gathered for row in part]
        if not trainer.is_global_zero or not rows:
            return
        last_frames = {frames[-1]: clip for clip, (_, frames) in getattr(trainer.datamodule, "clips", {}).items()}
        self._clips |= {last_frames[row.pair] for row in rows if row.pair in last_frames}
        step = trainer.global_step
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                import wandb

                if self._table is None:
                    self._table = wandb.Table(columns=[f.name for f in fields(Row)], log_mode="INCREMENTAL")
                for row in rows:
                    self._table.add_data(*(wandb.Image(value) if isinstance(value, np.ndarray) else value
                                           for value in (getattr(row, f.name) for f in fields(Row))))
                logger.experiment.log({"pairs": self._table, "trainer/global_step": step})
                # As media too: W&B's offline runs store a table's pictures as the word "Image" (wandb#4611).
                logger.log_image("images/finished", [row.result for row in rows], step=step,
                                 caption=[row.pair for row in rows])
            logger.log_metrics({"quality/final_ssim": sum(row.ssim for row in rows) / len(rows),
                                "quality/final_psnr": sum(row.psnr for row in rows) / len(rows)}, step=step)

    def _thumb(self, image: Tensor) -> np.ndarray:
        height, width = image.shape[-2:]
        scale = min(1.0, self.thumbnail / max(height, width))
        if scale < 1:
            image = F.interpolate(image[None].float().cpu(), scale_factor=scale, mode="bilinear", antialias=True)[0]
        return to_uint8(image)
