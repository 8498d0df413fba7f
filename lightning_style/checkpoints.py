"""Checkpoints that are written atomically and read safely: ``SafeCheckpointIO`` and ``read_checkpoint``.

Lightning writes through fsspec, which stages the file in the system's temporary folder and copies it when that
is on another filesystem (a full disk then leaves a truncated ``last.ckpt``), and it unpickles ``http(s)`` paths
with ``weights_only=False`` (a crafted checkpoint runs code). Here a checkpoint is written next to its final name
and renamed into place, and every checkpoint is read with ``weights_only=True`` from a local file only.
"""

from pathlib import Path
from typing import Any

import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO

from .errors import StyleTransferError
from .files import replace_atomically


def is_remote(path: str | Path) -> bool:
    """Whether ``path`` is a URL (``http://``, ``s3://``...) rather than a local file."""
    return "://" in str(path) and not str(path).startswith("file://")


def read_checkpoint(path: str | Path, option: str = "--ckpt_path", map_location: Any = "cpu") -> dict[str, Any]:
    """Load a checkpoint of this package with ``weights_only=True`` from a local file.

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
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise StyleTransferError(f"{option} {path}: not a readable checkpoint ({reason})") from None
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), dict):
        raise StyleTransferError(f"{option} {path}: not a lightning-style checkpoint (no state_dict in it)")
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
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        replace_atomically(path, lambda file: torch.save(checkpoint, file))

    def load_checkpoint(self, path: str | Path, map_location: Any = None, weights_only: bool | None = None) -> dict[str, Any]:
        return read_checkpoint(path, map_location=map_location or "cpu")
