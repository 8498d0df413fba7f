"""Callbacks that fail on purpose, for console-script runs in the tests: ``FailOnRank`` (one global rank raises at
step 2) and ``KillAtStep`` (the process SIGKILLs itself, as the OOM killer or a power cut would)."""

import os
import signal

from pytorch_lightning.callbacks import Callback


class FailOnRank(Callback):
    def __init__(self, rank: int = 0) -> None:
        self.rank = rank

    def on_train_batch_end(self, trainer, *args) -> None:
        if trainer.global_step == 2 and trainer.global_rank == self.rank:
            raise RuntimeError(f"rank {self.rank} fails here")


class KillAtStep(Callback):
    """Kill this process with SIGKILL (nothing runs after it) once ``step`` steps are done."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, *args) -> None:
        if trainer.global_step >= self.step:
            os.kill(os.getpid(), signal.SIGKILL)
