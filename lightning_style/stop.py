"""``GracefulStop``: a signal ends a run the way ``max_steps`` does, after the step in progress."""

import os
import signal
import threading

import pytorch_lightning as pl
import torch


class GracefulStop(pl.Callback):
    """Ctrl-C (SIGINT) and SIGTERM (``docker stop``, a SLURM preemption, ``timeout``) let the step in progress
    finish, then end the run as ``max_steps`` would: ``last.ckpt`` is saved, the batch in progress goes to
    ``<output.dir>/partial/``, and the command line prints its summary and exits with 128 + the signal's number
    (130 for SIGINT, 143 for SIGTERM), as shells expect. A second Ctrl-C stops at once.

    With several processes, a signal that reaches any of them (``kill`` of the first process alone, say) stops
    every one of them at the same step: the decision is shared at every step (a one-number all-reduce, next to
    the one Lightning already makes there). The handlers are those of the training loop only.

    Attributes:
        signal: the number of the signal that stopped the last run, or ``None``.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.signal: int | None = None
        self._received: int | None = None
        self._previous: dict[int, object] = {}
        self._loud = True

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.signal, self._received, self._loud = None, None, trainer.is_global_zero
        if threading.current_thread() is threading.main_thread():  # Python runs handlers there only
            self._previous = {signum: signal.signal(signum, self._handle) for signum in self.SIGNALS}
            if trainer.received_sigterm:  # caught by Lightning's handler, just before this one took over
                self._received = signal.SIGTERM
                # Lightning would end the run with a SystemExit of status 0 after this step: this callback decides.
                trainer._signal_connector.received_sigterm = False

    def _handle(self, signum: int, frame) -> None:
        if self._received is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # the second Ctrl-C
        self._received = signum
        if self._loud:  # os.write: a handler may interrupt a print in progress
            again = " (Ctrl-C again to stop at once)" if signum == signal.SIGINT else ""
            os.write(2, f"\nlightning-style: {signal.Signals(signum).name}: stopping after this step{again}\n".encode())

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args) -> None:
        received = self._received or 0
        if trainer.world_size > 1:
            received = int(trainer.strategy.reduce(torch.tensor(received, device=pl_module.device), reduce_op="max"))
        if received:
            self.signal = received
            trainer.should_stop = True

    def _restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._restore()

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._restore()
