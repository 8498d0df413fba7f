"""What streams a plan's batches to the trainer: ``PlanItems`` (this process's batch of each step) and
``PlanLoader`` (from the trainer's current step, through loader workers when there are any)."""

from collections.abc import Iterator

from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from .pairs import PairBatch, PairFiles
from .plan import Plan


class PlanItems(IterableDataset):
    """This process's :class:`PairBatch` of each global step from ``start`` to the plan's end; the first item and
    each batch's first carry pixels. Loader workers share the steps round-robin, which keeps their order."""

    def __init__(self, files: PairFiles, plan: Plan, rank: int) -> None:
        self.files, self.plan, self.rank = files, plan, rank
        self.start = plan.base

    def __iter__(self) -> Iterator[PairBatch]:
        worker = get_worker_info()
        first, stride = (worker.id, worker.num_workers) if worker else (0, 1)
        for step in range(self.start + first, self.plan.end, stride):
            k, within = self.plan.at(step)
            indices = list(self.plan.batches[self.rank][k])
            if step == self.start or within == 0:
                yield self.files.decode(indices, within, self.plan.steps)
            else:
                yield PairBatch(tuple(self.files.names[i] for i in indices), within, self.plan.steps)


class PlanLoader:
    """The steps of :class:`PlanItems` from the trainer's current step (a resumed run picks up where its checkpoint
    stopped), through a ``DataLoader`` of ``num_workers`` processes that decode ahead when there are any.

    Not a ``DataLoader`` itself, so that Lightning neither splits it with a distributed sampler (the plan dealt the
    batches already) nor warns about its workers and length. Lightning keeps the step count of a resumed epoch only
    for a loader it can restore: this one needs nothing restored."""

    def __init__(self, items: PlanItems, trainer, num_workers: int) -> None:
        self.items, self.num_workers, self._trainer = items, num_workers, trainer

    def __len__(self) -> int:
        return self.items.plan.end

    def __iter__(self) -> Iterator[PairBatch]:
        self.items.start = max(self._trainer.global_step, self.items.plan.base)
        if self.num_workers:
            return iter(DataLoader(self.items, batch_size=None, num_workers=self.num_workers))
        return iter(self.items)

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state_dict: dict) -> None:
        pass
