"""``IndependentDDPStrategy``: Lightning's DDP launch and process group, without ``DistributedDataParallel``, and
with bounded waits: for the processes to join, and for one that stops answering."""

import os
import signal
from datetime import timedelta

import torch.distributed as dist
from lightning_fabric.utilities.distributed import _init_dist_connection
from lightning_fabric.utilities.seed import reset_seed
from lightning_utilities.core.rank_zero import rank_zero_only as utilities_rank_zero_only
from pytorch_lightning.strategies import DDPStrategy
from pytorch_lightning.utilities.rank_zero import rank_zero_info, rank_zero_only

from .errors import OptionError, StyleTransferError
from .watchdog import Watchdog

JOINED = "lightning-style/joined"


def _listed(word: str, numbers: list[int]) -> str:
    """``process 1``, ``processes 1, 2``."""
    plural = "es" if word.endswith("s") else "s"
    return f"{word}{plural * (len(numbers) != 1)} {', '.join(map(str, numbers))}"


class IndependentDDPStrategy(DDPStrategy):
    """DDP's processes (one per device, on one or many nodes: Lightning's launcher, ``torchrun`` or SLURM), each
    optimising its own batches of pairs, with no ``DistributedDataParallel`` wrapper: no gradient is averaged
    and no parameter is broadcast, so processes may hold images of different shapes and exchange nothing while
    they optimise. They meet only where checkpoints and logging need it, at the same steps, since every process
    runs the same number of steps (see :mod:`lightning_style.plan`).

    Waits are bounded. The processes must all join within ``join_timeout`` seconds, or the run stops with one line
    naming those that did not come (under torchrun, its agents meet first, with their own bound). Once running, a
    process that stops answering for ``silence_timeout`` seconds (stopped, hung, its machine gone) makes the others
    stop with one line naming it (:mod:`lightning_style.watchdog`); without this they would wait at their next
    meeting for the process group's ``timeout``, 30 minutes by default, which remains the bound on a wait between
    live processes (at a checkpoint, one whose batch is slower than another's). A process that fails makes the
    others stop at once, with one line naming it and its error.

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
        """Meet the other processes within ``join_timeout`` (one line naming those that did not come), start the
        process group over the store where they met, then watch them. Lightning's own steps, with that store."""
        reset_seed()
        self.set_world_ranks()
        self._process_group_backend = self._get_process_group_backend()
        kwargs = {"timeout": self._timeout}
        if self.root_device.type != "cpu":
            kwargs["device_id"] = self.root_device
        if "TORCHELASTIC_RUN_ID" not in os.environ:  # torchrun's agents met already, and hold the store
            try:
                kwargs["store"] = self._join()
            except StyleTransferError:
                # No run: this process is no rank of one. Lightning's rank-zero switch (set above) would otherwise
                # keep a notebook's later runs silent, as if they were rank 1.
                rank_zero_only.rank = utilities_rank_zero_only.rank = 0
                raise
        _init_dist_connection(self.cluster_environment, self._process_group_backend, **kwargs)
        self._watchdog = Watchdog(self.global_rank, self.world_size, os.environ["MASTER_ADDR"],
                                  int(os.environ["MASTER_PORT"]), silence=self.silence_timeout,
                                  node=self.node_rank).start()

    def _join(self) -> dist.TCPStore:
        """The run's store (global rank 0 holds it), once every process has said it is there."""
        environment, rank, world = self.cluster_environment, self.global_rank, self.world_size
        where, bound = f"{environment.main_address}:{environment.main_port}", timedelta(seconds=self.join_timeout)
        if self.num_nodes > 1:
            rank_zero_info(f"lightning-style: waiting up to {self.join_timeout:g} s for the {self.num_nodes} nodes' "
                           f"{world} processes to join at {where}")
        try:
            store = dist.TCPStore(environment.main_address, environment.main_port, world, is_master=rank == 0,
                                  timeout=bound, wait_for_workers=False)
        except Exception:  # the client's connection, retried until the bound
            raise StyleTransferError(
                f"process {rank} of {world} (node {self.node_rank}) could not reach process 0 at {where} within "
                f"{self.join_timeout:g} s: start node 0's command, and give every node its address and port "
                "(MASTER_ADDR, MASTER_PORT)") from None
        keys = [f"{JOINED}/{other}" for other in range(world)]
        store.set(keys[rank], "1")
        try:
            store.wait(keys, bound)
        except Exception:
            missing = [other for other in range(world) if not store.check([keys[other]])]
            nodes = sorted({other // self.num_processes for other in missing})
            raise StyleTransferError(
                f"the run's {world} processes did not all join at {where} within {self.join_timeout:g} s: "
                f"{_listed('process', missing)} of {_listed('node', nodes)} did not come (process {rank} is here); "
                "start every node's command (each with its own node rank), or set --trainer.num_nodes to the "
                "nodes that run it") from None
        return store

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


def several_processes(devices, nodes) -> bool:
    """Whether ``--trainer.devices`` / ``--trainer.num_nodes`` ask for more than one process by number or list
    (``auto`` and ``-1`` depend on the machine: Lightning counts, and a DDP it picks is refused in one line).

    >>> [several_processes(d, 1) for d in (1, 2, "2", "auto", "-1", [0, 1], "0,1", "0,")] + [several_processes(1, 2)]
    [False, True, True, False, False, True, True, False, True]
    """
    if isinstance(nodes, int) and nodes > 1:
        return True
    if isinstance(devices, str):
        devices = int(devices) if devices.strip().isdigit() else [d for d in devices.split(",") if d.strip()]
    return isinstance(devices, int) and devices > 1 or isinstance(devices, (list, tuple)) and len(devices) > 1
