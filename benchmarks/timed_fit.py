"""``lightning-style fit`` for the benchmarks: prints ``STEP <seconds> <pairs>``, the median time of every step but
each batch's first (decoding, targets) and the mean number of pairs those steps optimised, on every process, and
``PEAK <bytes>``, the process's peak memory (CUDA's peak allocation on a GPU).

    python benchmarks/timed_fit.py fit --config configs/default.yaml ... --trainer.callbacks+=timed_fit.StepTimer
"""

import os
import resource
import statistics
import sys
import time

import pytorch_lightning as pl
import torch


class StepTimer(pl.Callback):
    def __init__(self) -> None:
        self.times: list[float] = []
        self.pairs: list[int] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.start, self.first = time.perf_counter(), batch.contents is not None

    def on_train_batch_end(self, trainer, pl_module, *args) -> None:
        if not self.first:
            self.times.append(time.perf_counter() - self.start)
            self.pairs.append(len(pl_module.run.names))

    def on_fit_end(self, trainer, pl_module) -> None:
        if self.times:
            print("STEP", statistics.median(self.times), statistics.mean(self.pairs), flush=True)


class Straggler(pl.Callback):
    """Makes one process ``STRAGGLER_FACTOR`` times slower (it sleeps after each step): global rank
    ``STRAGGLER_RANK`` (default 0) of a run whose environment has ``STRAGGLER_FACTOR``."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, *args) -> None:
        factor = float(os.environ.get("STRAGGLER_FACTOR", 1))
        if trainer.global_rank == int(os.environ.get("STRAGGLER_RANK", 0)):
            time.sleep((factor - 1) * (time.perf_counter() - self.start))


if __name__ == "__main__":
    from lightning_style.cli import main

    main(sys.argv[1:])
    cuda = torch.cuda.is_available()
    peak = torch.cuda.max_memory_allocated() if cuda else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print("PEAK", peak, flush=True)
