"""Which pairs each process optimises, in which batch, at which step: a pure function of the pairs' shapes.

Every process computes the same plan from the same inputs (the pairs not done yet, and the batches in progress of
a resumed checkpoint, which come first), so no process has to tell another what it does.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

Batch = tuple[int, ...]  # indices of the pairs optimised together; empty: the process idles for that batch's steps


@dataclass(frozen=True)
class Plan:
    """Each process's batches, in order, ``steps`` steps each, the first starting at global step ``base`` (a resumed
    run's first batches, in progress, started before the run: at ``base`` below the step it resumes from).

    Every process has the same number of batches (so all reach each checkpoint and logging step together);
    where the batches cannot be dealt evenly, a process idles (an empty batch) for the last round.
    """

    batches: tuple[tuple[Batch, ...], ...]  # [rank][k]
    steps: int
    base: int = 0

    @property
    def world(self) -> int:
        return len(self.batches)

    @property
    def end(self) -> int:
        """The global step at which every batch is finished."""
        return self.base + len(self.batches[0]) * self.steps

    def at(self, step: int) -> tuple[int, int]:
        """``(batch number, step within the batch)`` of every process at global step ``step``."""
        return divmod(step - self.base, self.steps)

    def rounds_done(self, step: int) -> int:
        """How many batches each process has finished before global step ``step``."""
        return max(0, min((step - self.base) // self.steps, len(self.batches[0])))

    def pairs_done(self, step: int) -> list[int]:
        """The pairs of every process's batches finished before global step ``step``."""
        rounds = self.rounds_done(step)
        return sorted(pair for rank in self.batches for batch in rank[:rounds] for pair in batch)

    def count_done(self, step: int) -> int:
        """``len(pairs_done(step))``, without listing the pairs (the progress bar asks at every step)."""
        return self._counts[self.rounds_done(step)]

    @cached_property
    def _counts(self) -> list[int]:
        counts = [0]
        for round_ in zip(*self.batches, strict=True):
            counts.append(counts[-1] + sum(len(batch) for batch in round_))
        return counts

    @classmethod
    def deal(cls, shapes: Sequence[tuple[int, int]], batch_size: int, world: int, steps: int, base: int = 0) -> "Plan":
        """Group the pairs by image shape into batches of at most ``batch_size`` and deal them to ``world``
        processes.

        Within a shape, batches have sizes that differ by at most one. While the number of batches is not a
        multiple of ``world``, the largest batch is split in two (smaller batches cost less per step, so the
        processes finish together); only when every batch holds a single pair does a process idle. Batch ``k``
        goes to process ``k mod world``. Pair order within a batch follows the input order.

        >>> Plan.deal([(4, 4)] * 5, batch_size=2, world=2, steps=10).batches
        (((0,), (2, 3)), ((1,), (4,)))
        """
        return cls(_deal(shapes, batch_size, world), steps, base)


def _deal(shapes: Sequence[tuple[int, int]], batch_size: int, world: int) -> tuple[tuple[Batch, ...], ...]:
    groups: dict[tuple[int, int], list[int]] = {}
    for index, shape in enumerate(shapes):
        groups.setdefault(tuple(shape), []).append(index)
    batches: list[Batch] = []
    for members in groups.values():
        count = math.ceil(len(members) / batch_size)
        size, extra = divmod(len(members), count)
        start = 0
        for k in range(count):
            stop = start + size + (k < extra)
            batches.append(tuple(members[start:stop]))
            start = stop
    while len(batches) % world and any(len(batch) > 1 for batch in batches):
        k = max(range(len(batches)), key=lambda k: len(batches[k]))
        batch = batches[k]
        half = (len(batch) + 1) // 2
        batches[k : k + 1] = [batch[:half], batch[half:]]
    batches += [()] * (-len(batches) % world)
    return tuple(tuple(batches[rank::world]) for rank in range(world))


def add_chains(batches: Sequence[Sequence[Batch]], chains: Sequence[Sequence[int]], pinned: Sequence[int | None],
               keep: bool = False) -> tuple[tuple[Batch, ...], ...]:
    """Add ``chains`` (a clip's frames, in order: each a batch of one pair, optimised after the one before, so all
    on one process) to each process's ``batches``: a chain with a ``pinned`` process (its frame in progress is
    there) to it, the others, longest first, to the process with the fewest batches; then even out the rounds with
    idle batches. ``keep``: the first batch of each process is a round in progress and stays first.

    >>> add_chains([[(0, 1)], [()]], [[2, 3, 4]], [None])
    (((0, 1), (), ()), ((2,), (3,), (4,)))
    """
    ranks = [list(rank) for rank in batches]
    for rank in ranks:  # the idle batches that evened out the rounds: chains may take their place
        while len(rank) > keep and rank[-1] == ():
            rank.pop()
    order = sorted(range(len(chains)), key=lambda k: (pinned[k] is None, -len(chains[k])))
    for k in order:
        rank = pinned[k] if pinned[k] is not None else min(range(len(ranks)), key=lambda r: len(ranks[r]))
        ranks[rank] += [(i,) for i in chains[k]]
    rounds = max(map(len, ranks))
    return tuple(tuple(rank + [()] * (rounds - len(rank))) for rank in ranks)
