"""Shards: independent parts of one job, for job arrays (SLURM ``--array``, Kubernetes Indexed Jobs).

A pair belongs to shard ``hash(name) mod count``: its shard depends only on its own name, so adding photos to
the folders moves no other pair between shards, and every shard finds its pairs without asking the others. The
shards share the output folder (each result is written atomically under its own name) and nothing else: each
keeps its own checkpoint and logs, so any shard can be rerun or retried alone.
"""

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass

from .errors import OptionError, StyleTransferError

DATA = "PairDataModule"


def shard_of(name: str, count: int) -> int:
    """The shard (``0 .. count-1``) that pair ``name`` belongs to: a stable hash of the name, the same on every
    machine and Python (not ``hash()``, which is salted per process).

    >>> shard_of("chelsea__swirls", 1)
    0
    >>> shard_of("chelsea__swirls", 16) == shard_of("chelsea__swirls", 16)
    True
    """
    digest = hashlib.blake2b(name.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % count


@dataclass(frozen=True)
class Shard:
    """Part ``index`` of ``count`` of a job; ``source`` says where the index came from (an option or a variable)."""

    index: int = 0
    count: int = 1
    source: str = "--data.shard"

    def holds(self, name: str) -> bool:
        """Whether pair ``name`` is this shard's."""
        return self.count == 1 or shard_of(name, self.count) == self.index

    @property
    def label(self) -> str:
        """``shard-03-of-16``: the name of its checkpoint folder, its logs and its W&B run (sorts by index)."""
        width = len(str(self.count - 1))
        return f"shard-{self.index:0{width}d}-of-{self.count}"

    def __str__(self) -> str:
        return f"shard {self.index} of {self.count}"


def find_shard(shard: int | None, shards: int | None, environ: Mapping[str, str] = os.environ) -> Shard:
    """The part of the job this run does: ``shard`` of ``shards`` when given; otherwise the index of a SLURM array
    task (``SLURM_ARRAY_TASK_ID``, the count ``SLURM_ARRAY_TASK_COUNT`` unless ``shards`` says it) or of a
    Kubernetes Indexed Job's pod (``JOB_COMPLETION_INDEX``; its count is not in the environment: ``shards``);
    otherwise (or with ``shards`` 1) the whole job.

    Raises:
        OptionError: an index out of range, a count below 1, one of the two without the other.
        StyleTransferError: an array not numbered ``0 .. N-1`` (its task ids are no shard numbers), an Indexed Job
            without ``shards``, a variable that is no number.
    """
    for option, value in (("shard", shard), ("shards", shards)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
            raise OptionError(DATA, option, value, "must be a whole number >= 0")
    if shards is not None and shards < 1:
        raise OptionError(DATA, "shards", shards, "must be >= 1 (1: the whole job)")
    if shards == 1:
        if shard not in (None, 0):
            raise OptionError(DATA, "shard", shard, "must be 0 with shards 1 (the whole job)")
        return Shard()
    if shard is not None:
        if shards is None:
            raise OptionError(DATA, "shard", shard, "needs shards, the number of shards of the job")
        source = "--data.shard"
    elif "SLURM_ARRAY_TASK_ID" in environ:
        shard, source = _number(environ, "SLURM_ARRAY_TASK_ID"), "SLURM_ARRAY_TASK_ID"
        if shards is None:
            # Task ids must be 0 .. COUNT-1: an array 1-16 would leave shard 0 to no task, silently.
            low, step = _number(environ, "SLURM_ARRAY_TASK_MIN", 0), _number(environ, "SLURM_ARRAY_TASK_STEP", 1)
            shards = _number(environ, "SLURM_ARRAY_TASK_COUNT")
            if low != 0 or step != 1 or shard >= shards:
                raise StyleTransferError(
                    f"SLURM array task {shard}: the array ({shards} tasks from {low} by {step}) is not numbered 0 .. "
                    f"{shards - 1}, so its task ids are not shard numbers: use `sbatch --array=0-{shards - 1}`, or "
                    "give --data.shards N (to retry some shards of 16: `--array=3,7` and --data.shards 16)")
    elif "JOB_COMPLETION_INDEX" in environ:
        shard, source = _number(environ, "JOB_COMPLETION_INDEX"), "JOB_COMPLETION_INDEX"
        if shards is None:
            raise StyleTransferError(f"JOB_COMPLETION_INDEX {shard}: a Kubernetes Indexed Job does not say how many "
                                     "indexes it has: give --data.shards N (the Job's completions)")
    else:
        if shards is not None:
            raise OptionError(DATA, "shards", shards, "needs shard (this run's index, 0 .. shards-1), or a SLURM "
                              "array task or Kubernetes Indexed Job to take it from")
        return Shard()
    if shard >= shards:
        if source != "--data.shard":
            raise StyleTransferError(f"{source} {shard}: not below --data.shards {shards}")
        raise OptionError(DATA, "shard", shard, f"must be below shards ({shards})")
    return Shard(shard, shards, source)


def _number(environ: Mapping[str, str], name: str, default: int | None = None) -> int:
    value = environ.get(name)
    if value is None and default is not None:
        return default
    if value is None or not value.strip().isdigit():
        raise StyleTransferError(f"{name}={value!r} is not a whole number (a shard's index or count)")
    return int(value)
