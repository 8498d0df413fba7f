"""A look before the leap: a job's plan printed without running it (``lightning-style fit ... --plan true``).

What a run would do (pairs done and to do, shards, batches and steps per process), the memory a process needs
(estimated as :mod:`lightning_style.resources` does), and its time, from a few steps of its largest batch
measured on the run's own accelerator: for sizing a job array before submitting it.
"""

import contextlib
import copy
import logging
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Iterator

import pytorch_lightning as pl

from .plan import Plan
from .quiet import LIGHTNING_LOG
from .resources import available_bytes, memory_needed
from .shards import shard_of

MEASURED_STEPS = 4  # the first of them (decoding, targets) is left out


class _StepTimes(pl.Callback):
    def __init__(self) -> None:
        self.ends: list[float] = []

    def on_train_batch_end(self, *_) -> None:
        self.ends.append(time.perf_counter())


def preview(trainer: pl.Trainer, model: pl.LightningModule, data, writer) -> list[str]:
    """The plan of the run that ``trainer.fit(model, data)`` would make, in lines; ``writer`` (an
    :class:`~lightning_style.callbacks.ImageWriter`) says which pairs its output folder holds already. Runs a
    few steps of the largest batch (nothing is written), else nothing."""
    model.trainer = trainer  # its settings name the precision, as in a fit
    expected = writer.expect(data, model.result_settings())
    done = set() if writer.overwrite else data.kept(writer.record.survey(expected)[0])
    pending = [i for i, name in enumerate(data.names) if name not in done]
    part = "the job" if data.shard.count == 1 else f"{data.shard} (from {data.shard.source})"
    frames = sum(len(names) for _, names in data.clips.values())
    clips = f" ({len(data.clips)} clip(s): {frames} frames, a pair each)" if data.clips else ""
    lines = [f"lightning-style plan: {len(data.names)} pairs{clips} in {part}: {len(done)} done in {writer.dir}/, "
             f"{len(pending)} to do, {data.steps} steps each, in batches of up to {data.batch_size} pairs of one "
             "image shape"]
    if data.shard.count > 1:
        sizes = Counter(shard_of(name, data.shard.count) for name in data.job_names)
        counts = [sizes.get(k, 0) for k in range(data.shard.count)]
        lines.append(f"  shards: {data.shard.count} of {min(counts)} to {max(counts)} pairs (the job's "
                     f"{len(data.job_names)}, by name)")
    if not pending:
        return [*lines, "  nothing to do"]
    world = trainer.world_size
    plan = Plan(data.deal(pending, world), data.steps)
    batches = plan.batches
    pixels = [[sum(_area(data.files.shapes[i]) for i in batch) for batch in rank] for rank in batches]
    lines.append(f"  processes: {world} (nodes {trainer.num_nodes} x devices {trainer.num_devices}), each "
                 f"{len(plan.batches[0])} batch(es), {len(plan.batches[0]) * data.steps} steps")
    largest, _ = max(((batch, area) for rank, areas in zip(batches, pixels, strict=True)
                      for batch, area in zip(rank, areas, strict=True)), key=lambda pair: pair[1])
    height, width = data.files.shapes[largest[0]]
    _, styles = data.shapes()
    need = memory_needed(model.features, [data.files.shapes[i] for i in largest], styles)
    free = available_bytes(trainer.strategy.root_device)
    here = f"; {free / 1e9:.1f} GB free here" if free else ""
    lines.append(f"  memory: about {need / 1e9:.1f} GB a process besides the VGG (its largest batch: "
                 f"{len(largest)} pair(s) of {width}x{height} px){here}")
    seconds = _measure(trainer, model, data, largest)
    per_pixel = seconds / max(max(rank) for rank in pixels if rank)
    run = max(sum(data.steps * per_pixel * area for area in rank) for rank in pixels)
    lines.append(f"  time: {seconds:.3g} s a step for that batch (measured: {MEASURED_STEPS - 1} steps on "
                 f"{trainer.strategy.root_device.type}); this run about {_duration(run)} (other batches scaled by "
                 f"their pixels; start-up not included): {_duration(run / len(pending) * world)} a pair on a process")
    return lines


def _area(shape: tuple[int, int]) -> int:
    return shape[0] * shape[1]


def _measure(trainer: pl.Trainer, model: pl.LightningModule, data, batch: tuple[int, ...]) -> float:
    """Seconds per step of the pairs ``batch``, after its first, in a fit of their own that writes nothing."""
    alone = copy.copy(data)  # the same files and options, this batch only, a few steps
    alone.done = frozenset(data.names) - {data.names[i] for i in batch}
    alone.steps, alone.plan, alone._resumed = MEASURED_STEPS, None, None
    alone.clips = {}  # a frame measured on its own, as a still
    timer = _StepTimes()
    with tempfile.TemporaryDirectory() as folder, _quiet():
        measuring = pl.Trainer(accelerator=trainer.accelerator, devices=1, precision=trainer.precision,
                               max_steps=MEASURED_STEPS, max_epochs=-1, logger=False, enable_checkpointing=False,
                               enable_progress_bar=False, enable_model_summary=False, callbacks=[timer],
                               default_root_dir=folder)
        measuring.fit(model, datamodule=alone)
    return statistics.median(b - a for a, b in zip(timer.ends, timer.ends[1:], strict=False))


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Without Lightning's lines about the measuring fit (its devices, its end): the plan is what it prints."""
    level = LIGHTNING_LOG.level
    LIGHTNING_LOG.setLevel(logging.WARNING)
    try:
        yield
    finally:
        LIGHTNING_LOG.setLevel(level)


def _duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"
