"""``IndependentDDPStrategy``: Lightning's DDP launch and process group, without ``DistributedDataParallel``."""

import signal

from pytorch_lightning.strategies import DDPStrategy


class IndependentDDPStrategy(DDPStrategy):
    """DDP's processes (one per device, on one or many nodes: Lightning's launcher, ``torchrun`` or SLURM), each
    optimising its own batches of pairs, with no ``DistributedDataParallel`` wrapper: no gradient is averaged
    and no parameter is broadcast, so processes may hold images of different shapes and exchange nothing while
    they optimise. They meet only where checkpoints and logging need it, at the same steps, since every process
    runs the same number of steps (see :mod:`lightning_style.plan`).

    When global rank 0 fails, it stops the processes it launched at once, instead of leaving them waiting for it
    at their next collective call (up to the process group's timeout).

    The command line uses it for ``--trainer.strategy ddp``. Arguments are :class:`DDPStrategy`'s.
    """

    strategy_name = "ddp_independent"

    def configure_ddp(self) -> None:
        pass  # the LightningModule stays as it is: nothing to average, nothing to broadcast

    def on_exception(self, exception: BaseException) -> None:
        super().on_exception(exception)
        procs = getattr(self.launcher, "procs", None)
        if self.global_rank == 0 and procs:
            self.launcher.kill(signal.SIGKILL)
