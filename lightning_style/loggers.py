"""``WandbLogger``: Lightning's W&B logger that never stops or prompts for lack of credentials or network."""

import netrc
import os
import socket
from typing import Any
from urllib.parse import urlparse

from lightning_utilities.core.rank_zero import rank_zero_info
from pytorch_lightning.loggers import WandbLogger as _WandbLogger


def _why_offline() -> str | None:
    """Why an online W&B run would fail or prompt here, or ``None`` if it can go online."""
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname or "api.wandb.ai"
    if not (os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE")):
        try:
            found = netrc.netrc(os.environ.get("NETRC")).authenticators(host)
        except (OSError, netrc.NetrcParseError):
            found = None
        if not found:
            return "no W&B credentials (run `wandb login` or set WANDB_API_KEY)"
    try:
        socket.create_connection((host, 443), timeout=3).close()
    except OSError:
        return f"{host} is unreachable"
    return None


class WandbLogger(_WandbLogger):
    """``pytorch_lightning.loggers.WandbLogger`` that falls back to offline mode instead of failing or prompting.

    Without credentials or without network (and unless ``WANDB_MODE`` or ``offline`` decide), the run is logged
    offline under ``<save_dir>/wandb/offline-run-*`` with one line saying so and how to upload it later
    (``wandb sync``). Every other argument is Lightning's (``project``, ``name``, ``save_dir``, ``log_model``...).

    Args:
        offline: log offline from the start.
        save_dir: folder under which W&B writes ``wandb/``.
        kwargs: passed to Lightning's ``WandbLogger`` and on to ``wandb.init``.
    """

    def __init__(self, offline: bool = False, save_dir: str = ".", **kwargs: Any) -> None:
        reason = None if offline or os.environ.get("WANDB_MODE") else _why_offline()
        super().__init__(offline=offline or reason is not None, save_dir=save_dir, **kwargs)
        if reason:
            folder = os.path.join(save_dir, "wandb")
            rank_zero_info(f"W&B: {reason}; logging offline to {folder}; upload later with `wandb sync {folder}/offline-run-*`")
