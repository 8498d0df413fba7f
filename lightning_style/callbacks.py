"""Callbacks that observe a run: ``ImageWriter`` keeps the job's record (each pair's result, written when its batch
finishes, with its provenance) and ``StepProgressBar`` counts steps and pairs. ``ImageLogger`` (dashboards) is in
:mod:`lightning_style.image_logger`, ``StepCheckpoint`` in :mod:`lightning_style.checkpoints`."""

import sys
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from PIL import Image
from pytorch_lightning.callbacks import TQDMProgressBar
from pytorch_lightning.callbacks.progress.tqdm_progress import Tqdm
from torch import Tensor

from .batch import BatchResult, PairResult
from .errors import StyleTransferError, WriteError
from .files import check_folder, check_outputs
from .record import Record, plain
from .video import write_clip


def to_uint8(image: Tensor) -> np.ndarray:
    """``(3, H, W)`` float image in ``[0, 1]`` -> ``(H, W, 3)`` uint8 array (what W&B and PIL display correctly)."""
    pixels = (image.detach().float().clamp(0, 1) * 255).round().byte()
    return np.ascontiguousarray(pixels.permute(1, 2, 0).cpu().numpy())


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
        resized = F.interpolate(image[None].float().cpu(), size=(height, width), mode="bilinear", antialias=True)
        parts += [resized[0], gap]
    return torch.cat(parts[:-1], dim=2).clamp(0, 1)


class ImageWriter(pl.Callback):
    """Writes each pair's result to ``<dir>/<content-stem>__<style-stem>.png`` when its batch finishes.

    Each result carries its provenance: the output folder is the job's record (see :mod:`lightning_style.record`).

    When a run is set up, the pairs whose results are in the folder with the provenance that this run would give
    them (the same input files, the same options that change a result) are done: the data module leaves them
    out, and their files are not touched. Other results there are redone, and one line says how many and why;
    ``overwrite`` redoes every pair. Every process writes the pairs it optimised (no image passes between
    processes), atomically, as sRGB PNGs.

    It reads what the module publishes (:attr:`StyleTransfer.result`, :meth:`StyleTransfer.snapshot`), never its
    insides. Half-optimised images never carry a final name: every ``every_n_steps`` steps, and when a run ends
    before its batches do (``max_steps``, a signal, an error after a good step), the batch in progress (its images
    at its last NaN check) goes to ``<dir>/partial/<name>.png``. If a result cannot be written (a full disk),
    every process stops after that step and the run ends with :class:`~lightning_style.WriteError`, which names
    the file.

    Args:
        dir: output folder, created if needed.
        every_n_steps: also write the batch in progress to ``<dir>/partial/`` every this many steps (0: never).
        overwrite: redo every pair, even those whose results are already in the folder.
    """

    def __init__(self, dir: str = "outputs", *, every_n_steps: int = 0, overwrite: bool = False) -> None:
        self.dir, self.record = Path(dir), Record(dir)
        self.every_n_steps, self.overwrite = every_n_steps, overwrite
        self.expected: dict[str, dict] = {}  # each pair's provenance in this run (without its steps)
        self.written = 0  # results written in this run, by every process (known at the end of fit)
        self.skipped = 0  # pairs whose files could not be decoded when their batch came up (every process, at the end)
        self._start_step: int | None = None
        self._failed: WriteError | None = None
        self._checked = False  # check_writable passed for the fit under way

    def check_writable(self, names, clips=()) -> None:
        """Raise unless the folder can be written and each pair's ``<name>.png`` (and each clip pair's ``<clip>.mp4``)
        can be (re)placed. The command line calls it before anything is written; a fit calls it as it starts,
        unless it passed for this fit."""
        check_folder(self.dir, "ImageWriter", "dir")
        check_outputs(self.dir, [f"{name}.png" for name in names] + [f"{clip}.mp4" for clip in clips])
        self._checked = True

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._checked = False

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Read the record: which pairs are done (the first process reads, every process gets its answer). After
        every ``setup``, so that a run refused there has written nothing."""
        data = trainer.datamodule
        settings = pl_module.result_settings()
        self.expected = self.expect(data, settings)
        done, redo = set(), {}
        if trainer.is_global_zero:
            if not self._checked:
                self.check_writable(data.names, getattr(data, "clips", ()))
            if not self.overwrite:
                done, redo = self.record.survey(self.expected)
        done, redo = trainer.strategy.broadcast((done, redo), src=0)
        data.leave_out(done, settings, self.dir)
        done = getattr(data, "done", done)  # a clip's frames after a frame to redo are redone too
        if done and trainer.is_global_zero:
            print(f"lightning-style: {len(done)} of {len(data.names)} pairs are done in {self.dir}/ and are kept "
                  f"({len(data.names) - len(done)} to do)", flush=True)
        if redo and trainer.is_global_zero:
            reasons = "; ".join(f"{count}: {why}" for why, count in Counter(redo.values()).most_common(3))
            print(f"lightning-style: redoing {len(redo)} result(s) in {self.dir}/ made from other inputs or settings "
                  f"({reasons}{'; ...' if len(set(redo.values())) > 3 else ''})", flush=True)
        if trainer.is_global_zero:
            for clip, (_, frames) in getattr(data, "clips", {}).items():
                if not set(frames) <= done:  # frames to redo: the video made of the old ones goes
                    self.record.clip_path(clip).unlink(missing_ok=True)
                elif not self.record.clip_path(clip).exists():  # a stop between its last frame and its encoding
                    self.encode(data, clip)

    @staticmethod
    def expect(data, settings: dict) -> dict[str, dict]:
        """Each pair's provenance in a run of ``data`` (a :class:`~lightning_style.PairDataModule`) with the
        model's ``settings``, without its steps: what a result must carry to count as done."""
        still = {key: value for key, value in settings.items() if key != "temporal_weight"}  # it changes frames only
        frames = getattr(data, "files", None)
        return {name: plain({"pair": name, "inputs": data.inputs(i),
                             "settings": settings if frames is not None and frames.frame(i) >= 0 else still})
                for i, name in enumerate(data.names)}

    def write(self, result: BatchResult) -> list[Path]:
        """Write a batch's images, as results or (a snapshot) as partial images; returns the paths."""
        return [self._write_pair(pair, result) for pair in result]

    def _write_pair(self, pair: PairResult, result: BatchResult) -> Path:
        return self.record.write(pair.name, to_pil(pair.image), {**self.expected[pair.name], "steps": result.step},
                                 partial=not result.complete)

    def _write_partial(self, result: BatchResult | None) -> None:
        """Partial images are a courtesy: one that cannot be written is a warning, and the run (its checkpoint,
        its stop) goes on. Only images that this run optimised (a batch's starting images are no result)."""
        if (result is None or result.complete or self._start_step is None or result.global_step <= self._start_step
                or result.step == 0):
            return
        try:
            self.write(result)
        except OSError as error:
            warnings.warn(f"ImageWriter(dir={str(self.dir)!r}): could not write the partial images "
                          f"({error.strerror or error})", stacklevel=1)

    def encode(self, data, clip: str) -> Path | None:
        """Encode clip pair ``clip``'s frames (results in the folder) as ``<dir>/<clip>.mp4``, with its source's
        timestamps and audio. A frame with no result (it could not be decoded) or a failed encoding leaves the clip
        unencoded, with a one-line warning: the frames stay the record, and the next run encodes them."""
        source, frames = data.clips[clip]
        paths = [self.record.path(name) for name in frames]
        if missing := [path for path in paths if not path.is_file()]:
            warnings.warn(f"clip {clip}: {len(missing)} frame(s) have no result ({missing[0].name} first): "
                          f"{self.record.clip_path(clip).name} is not written", stacklevel=1)
            return None

        def images():
            for path in paths:
                with Image.open(path) as image:
                    yield image.convert("RGB")

        try:
            write_clip(self.record.clip_path(clip), images(), source)
        except StyleTransferError as error:
            warnings.warn(f"clip {clip}: {error}", stacklevel=1)
            return None
        return self.record.clip_path(clip)

    def _write_or_stop(self, trainer: pl.Trainer, result: BatchResult) -> None:
        failed = False
        data = trainer.datamodule
        last_frames = {frames[-1]: clip for clip, (_, frames) in getattr(data, "clips", {}).items()}
        for pair in result:
            try:
                self._write_pair(pair, result)
                self.written += 1
                if pair.name in last_frames:
                    self.encode(data, last_frames[pair.name])
            except OSError as error:
                self._failed = WriteError(f"could not write {self.record.path(pair.name)} ({error.strerror or error}); "
                                          "free the space (or make the folder writable) and run the same command: "
                                          "the pairs not written are redone")
                failed = True
                break
        # Every process finishes its batch at the same step: they agree to stop together, after this checkpoint,
        # and each ends with an error.
        if trainer.strategy.reduce_boolean_decision(failed, all=False):
            trainer.should_stop = True
            self._failed = self._failed or WriteError(
                f"another process could not write its results to {self.dir}/ (its own line names the file); free "
                "the space (or make the folder writable) and run the same command: the pairs not written are redone")

    def _log_progress(self, trainer: pl.Trainer) -> None:
        """The job's progress on the dashboards: ``progress/pairs_done`` of ``progress/pairs`` (this run's part,
        over every process), and for a shard ``progress/job_results`` of ``progress/job_pairs``: the pairs of every
        shard that have a result in the folder, from one listing of it."""
        data = trainer.datamodule
        if not hasattr(data, "progress"):
            return
        done, total = data.progress(trainer.global_step)
        figures = {"progress/pairs_done": done, "progress/pairs": total}
        if getattr(data, "shard", None) is not None and data.shard.count > 1:
            figures |= {"progress/job_results": self.record.count_results(data.job_names),
                        "progress/job_pairs": len(data.job_names)}
        for logger in trainer.loggers:
            logger.log_metrics(figures, step=trainer.global_step)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start_step, self._failed, self.written, self.skipped = trainer.global_step, None, 0, 0

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch, batch_idx) -> None:
        self.skipped += len(batch.skipped)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch, batch_idx) -> None:
        if pl_module.result is not None:
            self._write_or_stop(trainer, pl_module.result)
            if trainer.is_global_zero:
                self._log_progress(trainer)
        elif self.every_n_steps > 0 and trainer.global_step % self.every_n_steps == 0:
            self._write_partial(pl_module.snapshot())

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._write_partial(pl_module.snapshot())  # a run stopped mid-batch
        counts = torch.tensor([float(self.written), float(self.skipped)], device=pl_module.device)
        self.written, self.skipped = (int(n) for n in trainer.strategy.reduce(counts, reduce_op="sum").tolist())

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._failed is not None:
            failed, self._failed = self._failed, None
            raise failed

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        # The batch in progress as partial images, those of its last good check (after a NonFiniteError: the
        # images it put back), if this run optimised them.
        if not isinstance(exception, (StyleTransferError, WriteError)):
            self._write_partial(pl_module.snapshot())

    def summary(self) -> tuple[int, int]:
        """``(pairs done, pairs in all)`` of the job, read from the output folder."""
        return len(self.record.survey(self.expected)[0]), len(self.expected)


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

    def init_train_tqdm(self) -> Tqdm:
        """One bar over the run's steps, drawn first with its total and its start (a resumed run's step): no
        ``Training 0/?`` or ``Epoch 0`` bars before it, which a notebook would keep as lines of their own."""
        trainer = self.trainer
        return Tqdm(desc="Stylising", total=self._total(trainer), initial=trainer.global_step,
                    position=2 * self.process_position, disable=self.is_disabled, leave=True, dynamic_ncols=True,
                    file=sys.stdout, smoothing=0, bar_format=self.BAR_FORMAT)

    def on_train_epoch_start(self, trainer: pl.Trainer, *_) -> None:
        pass  # the bar counts the run's steps: an epoch starts no bar of its own

    @staticmethod
    def _total(trainer: pl.Trainer) -> int | None:
        totals = [n for n in (trainer.max_steps, trainer.num_training_batches) if 0 < n < float("inf")]
        return min(totals) if totals else None

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
