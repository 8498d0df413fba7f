"""``ImageLogger``: pictures and quality figures of a run for the dashboards (W&B, TensorBoard, CSV)."""

import numpy as np
import pytorch_lightning as pl
import torch
import torch.distributed as dist
import torch.nn.functional as F
from pytorch_lightning.loggers import TensorBoardLogger, WandbLogger
from torch import Tensor
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

from .callbacks import side_by_side, to_uint8


class ImageLogger(pl.Callback):
    """Pictures and quality figures for the dashboards, usable with thousands of pairs.

    Every ``every_n_steps`` steps, the batch in progress (global rank 0's) as one picture per pair, content |
    style(s) | result, under the single key ``images/batch`` (W&B, captioned with the pair and step; TensorBoard),
    with ``quality/ssim`` and ``quality/psnr`` (torchmetrics' SSIM and PSNR of the results against the contents,
    means over the batch) for every logger. When batches finish, their pairs (from every process: small
    thumbnails, gathered then) become rows of the W&B table ``pairs``: content, style, result, final losses, SSIM,
    PSNR, logged incrementally, and their results a captioned list of pictures under ``images/finished`` (media
    files of the run, so that offline runs hold them too); other loggers get ``quality/final_ssim`` and
    ``quality/final_psnr``.

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
                # As media too: W&B's offline runs store a table's pictures as the word "Image" (wandb#4611).
                logger.log_image("images/finished", [row[3] for row in rows], step=step, caption=[row[0] for row in rows])
            ssim, psnr = (sum(row[k] for row in rows) / len(rows) for k in (7, 8))
            logger.log_metrics({"quality/final_ssim": ssim, "quality/final_psnr": psnr}, step=step)

    def _thumb(self, image: Tensor) -> np.ndarray:
        height, width = image.shape[-2:]
        scale = min(1.0, self.thumbnail / max(height, width))
        small = F.interpolate(image[None].float().cpu(), scale_factor=scale, mode="bilinear", antialias=True)[0] if scale < 1 else image
        return to_uint8(small)
