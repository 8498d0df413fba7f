"""A callback that makes global rank 0 fail at step 2 (imported by a DDP test's console-script run)."""

from pytorch_lightning.callbacks import Callback


class FailOnRankZero(Callback):
    def on_train_batch_end(self, trainer, *args) -> None:
        if trainer.global_step == 2 and trainer.global_rank == 0:
            raise RuntimeError("rank 0 fails here")
