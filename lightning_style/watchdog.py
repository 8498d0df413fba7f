"""Bounded waits between the processes of a run: each says it is alive; one that stops saying so stops the others.

Processes meet at checkpoints and batch ends (:mod:`lightning_style.plan`). A process that stops answering there
(stopped, hung, its machine gone) would leave the others waiting in the collective call for the process group's
timeout (Lightning's default: 30 minutes), with nothing said. Instead, a thread in every process counts a heartbeat
in the run's rendezvous store every few seconds, even in the middle of a long step, and reads the others'. When one
has not counted for ``silence`` seconds, or has failed, every other process prints one line naming it and exits at
once: the main thread may be blocked in a collective that no Python code can interrupt. The results on disk and the
last checkpoint are what any stop leaves (:mod:`lightning_style.record`), so the same command goes on.
"""

import contextlib
import os
import socket
import sys
import threading
import time
from datetime import timedelta

import torch.distributed as dist

KEY = "lightning-style/alive"
EXIT_STATUS = 1


class Watchdog:
    """The heartbeat of process ``rank`` of ``world``, through a client of the store at ``host:port`` (the process
    group's), watching the others. :meth:`start` it once the process group is up, :meth:`stop` it before the
    process leaves the run.

    Args:
        rank: this process's global rank.
        world: the number of processes.
        host: the rendezvous store's address (``MASTER_ADDR``).
        port: its port (``MASTER_PORT``).
        silence: seconds without a heartbeat after which a process counts as gone.
        node: this process's node rank, for the message.
    """

    def __init__(self, rank: int, world: int, host: str, port: int, *, silence: float, node: int = 0) -> None:
        self.rank, self.world, self.silence = rank, world, silence
        self.interval = min(5.0, silence / 4)
        self.store = dist.TCPStore(host, port, world, is_master=False, timeout=timedelta(seconds=max(1.0, silence)),
                                   wait_for_workers=False)
        self.store.set(f"{KEY}/who/{rank}", f"node {node}, pid {os.getpid()} on {socket.gethostname()}")
        self._stopped = threading.Event()
        self._answered = time.monotonic()  # when the store last answered a whole round
        self._threads = [threading.Thread(target=target, name=f"lightning-style-{target.__name__[1:]}", daemon=True)
                         for target in (self._watch, self._guard)]

    def start(self) -> "Watchdog":
        for thread in self._threads:
            thread.start()
        return self

    def stop(self, failure: str | None = None) -> None:
        """Stop watching, and tell the others: this process finished (they stop waiting for its heartbeat), or it
        failed with ``failure`` (they stop at once, saying so)."""
        if not self._stopped.is_set():
            self._stopped.set()
            key, value = ("left", "1") if failure is None else ("failed", failure)
            with contextlib.suppress(Exception):  # the store went first (its process finished): nothing to tell
                self.store.set(f"{KEY}/{key}/{self.rank}", value)

    def _watch(self) -> None:
        others = [rank for rank in range(self.world) if rank != self.rank]
        counts: dict[int, int] = {}
        heard = {rank: time.monotonic() for rank in others}  # when each last counted, by this process's clock
        while not self._stopped.wait(self.interval):
            now = time.monotonic()
            try:
                self.store.add(f"{KEY}/beat/{self.rank}", 1)
                for rank in others:
                    count = self.store.add(f"{KEY}/beat/{rank}", 0)  # reads without waiting for the key
                    if count != counts.get(rank) or self.store.check([f"{KEY}/left/{rank}"]):
                        counts[rank], heard[rank] = count, now
                    if (failure := self._failure(rank)) and not self._stopped.is_set():
                        self.give_up(failure)
            except Exception:  # the store refuses: its host is gone (the guard says so once it lasts)
                continue
            self._answered = time.monotonic()
            silent = [rank for rank in others if now - heard[rank] > self.silence]
            if silent and not self._stopped.is_set():
                self.give_up(f"process {silent[0]} of {self.world} ({self._who(silent[0])}) has not answered for "
                             f"{self.silence:g} s (stopped, hung, or its machine gone)")

    def _guard(self) -> None:
        """The store's host (global rank 0's process, or torchrun's agent) may itself stop: a request to it then
        waits forever, whatever the store's timeout. This thread gives up when the watching one has not heard
        from the store for ``silence`` seconds."""
        while not self._stopped.wait(self.interval):
            if time.monotonic() - self._answered > self.silence + self.interval and not self._stopped.is_set():
                self.give_up(f"the run's rendezvous store (at {self._where()}, held by process 0 or the launcher) "
                             f"has not answered for {self.silence:g} s")

    def another_failed(self) -> str | None:
        """Why another process failed, in words, if one said it did: a collective call that fails here (its peer
        closed the connection) is the echo of that failure."""
        with contextlib.suppress(Exception):
            return next((failure for rank in range(self.world) if rank != self.rank
                         if (failure := self._failure(rank))), None)
        return None

    def _failure(self, rank: int) -> str | None:
        if not self.store.check([f"{KEY}/failed/{rank}"]):
            return None
        why = self.store.get(f"{KEY}/failed/{rank}").decode()
        return f"process {rank} of {self.world} ({self._who(rank)}) failed: {why}"

    def _who(self, rank: int) -> str:
        try:
            return self.store.get(f"{KEY}/who/{rank}").decode()
        except Exception:
            return "not yet known"

    def _where(self) -> str:
        return f"{os.environ.get('MASTER_ADDR', '?')}:{os.environ.get('MASTER_PORT', '?')}"

    def give_up(self, why: str) -> None:
        """Say ``why`` in one line and end this process now."""
        print(f"lightning-style: error: {why}: process {self.rank} stops too; the results on disk and the last "
              "checkpoint are kept: run the same command (with --ckpt_path last) to go on", file=sys.stderr,
              flush=True)
        os._exit(EXIT_STATUS)  # the main thread may be blocked in a collective call: nothing else would end it
