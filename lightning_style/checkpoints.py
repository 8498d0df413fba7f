"""Checkpoints that are written atomically and read safely (``SafeCheckpointIO``, ``read_checkpoint``), and the
checkpoint callback of the command line (``StepCheckpoint``).

Lightning writes through fsspec, which stages the file in the system's temporary folder and copies it when that
is on another filesystem (a full disk then leaves a truncated ``last.ckpt``), and it unpickles ``http(s)`` paths
with ``weights_only=False`` (a crafted checkpoint runs code). Here a checkpoint is written next to its final name
and renamed into place, and every checkpoint is read with ``weights_only=True`` from a local file only. What a
checkpoint says is data, never an instruction: no file path from it is used (Lightning's ``ModelCheckpoint`` would
delete the file that a crafted ``last_model_path`` names), and its model options are not read as configuration.
"""

from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO
from pytorch_lightning.callbacks import ModelCheckpoint

from .errors import StyleTransferError, WriteError
from .files import replace_atomically

REQUIRED = {"global_step": int, "loops": dict, "optimizer_states": list, "lr_schedulers": list, "in_progress": list}
PATHS = ("best_model_path", "kth_best_model_path", "last_model_path")


def is_remote(path: str | Path) -> bool:
    """Whether ``path`` is a URL (``http://``, ``s3://``...) rather than a local file."""
    return "://" in str(path) and not str(path).startswith("file://")


def read_checkpoint(path: str | Path, option: str = "--ckpt_path", map_location: Any = "cpu",
                    mmap: bool = False) -> dict[str, Any]:
    """Load a checkpoint of this package with ``weights_only=True`` from a local file (``mmap``: map its tensors
    instead of reading them, for a look at its fields).

    Raises:
        StyleTransferError: naming ``option`` and ``path`` when it is remote, missing, a folder, or not a
            readable checkpoint (truncated, empty, random bytes, another kind of file).
    """
    if is_remote(path):
        raise StyleTransferError(f"{option} {path}: remote checkpoints are not loaded (unpickling one can run code); "
                                 "download it and pass the local file")
    path = Path(str(path).removeprefix("file://")).expanduser()
    if not path.is_file():
        what = "it is a folder" if path.is_dir() else "no such file"
        raise StyleTransferError(f"{option} {path}: {what}")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except Exception as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise StyleTransferError(f"{option} {path}: not a readable checkpoint ({reason})") from None
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), dict):
        raise StyleTransferError(f"{option} {path}: not a lightning-style checkpoint (no state_dict in it)")
    for key, kind in REQUIRED.items():
        if not isinstance(checkpoint.get(key), kind) or checkpoint.get(key) is True or checkpoint.get(key) is False:
            raise StyleTransferError(f"{option} {path}: malformed checkpoint field {key} (not a {kind.__name__})")
    if checkpoint["global_step"] < 0:
        raise StyleTransferError(f"{option} {path}: malformed checkpoint field global_step (below 0)")
    if not isinstance(checkpoint.get("loops").get("fit_loop"), dict):
        raise StyleTransferError(f"{option} {path}: malformed checkpoint field loops.fit_loop (not a dict)")
    if not isinstance(checkpoint.setdefault("callbacks", {}), dict):
        raise StyleTransferError(f"{option} {path}: malformed checkpoint field callbacks (not a dict)")
    for state in checkpoint["callbacks"].values():
        if isinstance(state, dict) and {*PATHS, "best_k_models"} & state.keys():  # a ModelCheckpoint's
            state.update(dict.fromkeys(PATHS, ""), best_k_models={})  # paths it would delete: never used
    return checkpoint


class SafeCheckpointIO(TorchCheckpointIO):
    """Lightning's ``TorchCheckpointIO``, writing local checkpoints atomically in their own folder and reading
    every checkpoint with ``weights_only=True``, from local files only.

    :class:`~lightning_style.StyleTransfer` installs it on the trainer's strategy when that uses Lightning's
    default, so the command line and the Python API both get it.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None) -> None:
        if storage_options is not None or is_remote(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            replace_atomically(path, lambda file: torch.save(checkpoint, file))
        except OSError as error:
            raise WriteError(f"could not write the checkpoint {path} ({error.strerror or error}); the one before "
                             "it, if any, is intact: free the space and run the same command with --ckpt_path "
                             "last") from None

    def load_checkpoint(self, path: str | Path, map_location: Any = None,
                        weights_only: bool | None = None) -> dict[str, Any]:
        return read_checkpoint(path, map_location=map_location or "cpu")


class StepCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` for runs of pairs: ``last.ckpt`` every ``every_n_train_steps`` steps, at every batch end
    (cheap: no batch is in progress then, their results are on disk) and once at the end of fit, whatever step
    that is; always the same file (never a ``last-v1.ckpt`` beside a stale ``last.ckpt``). The defaults are the
    command line's: every 100 steps, no other checkpoint kept. Other arguments are Lightning's.
    """

    def __init__(self, every_n_train_steps: int = 100, save_top_k: int = 0, save_last: bool = True, **kwargs) -> None:
        kwargs.setdefault("enable_version_counter", False)
        super().__init__(every_n_train_steps=every_n_train_steps, save_top_k=save_top_k, save_last=save_last, **kwargs)

    def _save_last_once(self, trainer: pl.Trainer) -> None:
        if self.save_last and trainer.global_step > 0 and self._last_global_step_saved != trainer.global_step:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch, batch_idx) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        if getattr(batch, "step", None) == getattr(batch, "steps", 0) - 1:  # every process ends a batch here
            self._save_last_once(trainer)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._save_last_once(trainer)
