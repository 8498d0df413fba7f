"""``IndependentDDPStrategy``: Lightning's DDP launch and process group, without ``DistributedDataParallel``, and
with bounded waits: for the processes to join, and for one that stops answering."""

import os
import re
import signal
from datetime import timedelta

import torch.distributed as dist
from pytorch_lightning.strategies import DDPStrategy
from pytorch_lightning.utilities.rank_zero import rank_zero_info

from .errors import OptionError, StyleTransferError
from .watchdog import Watchdog


class IndependentDDPStrategy(DDPStrategy):
    """DDP's processes (one per device, on one or many nodes: Lightning's launcher, ``torchrun`` or SLURM), each
    optimising its own batches of pairs, with no ``DistributedDataParallel`` wrapper: no gradient is averaged
    and no parameter is broadcast, so processes may hold images of different shapes and exchange nothing while
    they optimise. They meet only where checkpoints and logging need it, at the same steps, since every process
    runs the same number of steps (see :mod:`lightning_style.plan`).

    Waits are bounded. The processes must all join within ``join_timeout`` seconds, or the run stops with one line
    saying how many did. Once running, a process that stops answering for ``silence_timeout`` seconds (stopped,
    hung, its machine gone) makes the others stop with one line naming it (:mod:`lightning_style.watchdog`);
    without this they would wait at their next meeting for the process group's ``timeout``, 30 minutes by
    default, which remains the bound on a wait between live processes (at a checkpoint, one whose batch is slower
    than another's). A process that fails makes the others stop at once, with one line naming it and its error.

    The command line uses it for ``--trainer.strategy ddp``.

    Args:
        join_timeout: seconds to wait for every process to join (600, torchrun's own rendezvous timeout: nodes of a
            cluster job may start minutes apart).
        silence_timeout: seconds without a heartbeat (one every 5 s, from a thread that beats through long steps)
            after which a process counts as gone (60: far above the pauses of a loaded machine).
        kwargs: :class:`DDPStrategy`'s (``timeout``, ``process_group_backend``...).
    """

    strategy_name = "ddp_independent"

    def __init__(self, *, join_timeout: float = 600.0, silence_timeout: float = 60.0, **kwargs) -> None:
        for option, value in (("join_timeout", join_timeout), ("silence_timeout", silence_timeout)):
            if not value > 0:
                raise OptionError("IndependentDDPStrategy", option, value, "must be a number of seconds > 0")
        super().__init__(**kwargs)
        self.join_timeout, self.silence_timeout = join_timeout, silence_timeout
        self._watchdog: Watchdog | None = None

    def setup_distributed(self) -> None:
        """Join the other processes within ``join_timeout`` (one line if they do not), then watch them."""
        waits, self._timeout = self._timeout, timedelta(seconds=self.join_timeout)
        if self.num_nodes > 1:
            rank_zero_info(f"lightning-style: waiting up to {self.join_timeout:g} s for the {self.num_nodes} nodes' "
                           f"{self.num_nodes * self.num_processes} processes to join")
        try:
            super().setup_distributed()
        except Exception as error:  # torch's DistStoreError / DistNetworkError, or a RuntimeError of its backend
            if "timed out" not in str(error).lower() and "timeout" not in str(error).lower():
                raise
            joined = re.search(r"(\d+)/\d+ clients joined", str(error))  # the store's host counts them
            seen = f" ({joined[1]} did)" if joined else ""
            where = f"{os.environ.get('MASTER_ADDR', '?')}:{os.environ.get('MASTER_PORT', '?')}"
            raise StyleTransferError(
                f"the run's {self.world_size} processes did not all join at {where} within {self.join_timeout:g} s"
                f"{seen} (process {self.global_rank} is here): start every node's command (each with its own "
                "node rank), or set --trainer.num_nodes to the nodes that run it") from None
        finally:
            self._timeout = waits
        dist.set_timeout(waits)  # from here on, the bound on a wait between processes that do answer
        self._watchdog = Watchdog(self.global_rank, self.world_size, os.environ["MASTER_ADDR"],
                                  int(os.environ["MASTER_PORT"]), silence=self.silence_timeout,
                                  node=self.node_rank).start()

    def configure_ddp(self) -> None:
        pass  # the LightningModule stays as it is: nothing to average, nothing to broadcast

    def teardown(self) -> None:
        if self._watchdog is not None:
            self._watchdog.stop()
            self._watchdog = None
        super().teardown()

    def on_exception(self, exception: BaseException) -> None:
        super().on_exception(exception)
        if self._watchdog is not None:
            if another := self._watchdog.another_failed():  # this failure is its echo: say the cause, once
                self._watchdog.give_up(another)
            first = (str(exception).splitlines() or [""])[0][:300]
            # the others stop now, not at their next meeting
            self._watchdog.stop(failure=f"{type(exception).__name__}: {first}" if first else type(exception).__name__)
            self._watchdog = None
        procs = getattr(self.launcher, "procs", None)
        if self.global_rank == 0 and procs:
            self.launcher.kill(signal.SIGKILL)
