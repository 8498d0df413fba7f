"""The run's loggers: ``WandbLogger``, Lightning's W&B logger that never stops or prompts for lack of credentials or
network, and ``SaveConfigToLoggers``, which gives every logger the run's whole config."""

import json
import netrc
import os
import socket
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from lightning_utilities.core.rank_zero import rank_zero_info
from pytorch_lightning import Trainer
from pytorch_lightning.cli import SaveConfigCallback
from pytorch_lightning.loggers import WandbLogger as _WandbLogger
from pytorch_lightning.loggers.logger import rank_zero_experiment

from .files import replace_atomically


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


def _safe(name: str) -> str:
    """``name`` as part of a file name: letters, digits, ``-`` and ``_`` kept, anything else ``_``."""
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)[:100]


def _kept_run_id(path: Path) -> str | None:
    """The W&B run id kept in ``path``, if there is one."""
    try:
        found = path.read_text().strip()
    except OSError:
        return None
    return found if found.isalnum() else None


class WandbLogger(_WandbLogger):
    """``pytorch_lightning.loggers.WandbLogger`` that falls back to offline mode instead of failing or prompting.

    Without credentials or without network (and unless ``WANDB_MODE`` or ``offline`` decide), the run is logged
    offline under ``<save_dir>/wandb/offline-run-*`` with one line saying so and how to upload it later
    (``wandb sync``). Every other argument is Lightning's (``project``, ``name``, ``save_dir``, ``log_model``...).

    One job, one W&B run: unless an ``id`` is given, the run's id is kept in ``<save_dir>/wandb/run-id`` (the
    command line's ``save_dir`` is ``--output.dir``), and every later run of the job continues that W&B run
    (``resume="allow"``): one dashboard, its curves and its ``pairs`` table continuous across stops and resumes.
    A run with a ``name`` keeps its id in ``run-id-<name>``: the shards of a job (the command line names each
    ``shard-I-of-N`` and puts them in one ``group``) are one run each, each continued by its own retries.

    Args:
        offline: log offline from the start.
        save_dir: folder under which W&B writes ``wandb/``; the command line's default is ``--output.dir``, the
            Python default the current folder.
        kwargs: passed to Lightning's ``WandbLogger`` and on to ``wandb.init``.
    """

    def __init__(self, offline: bool = False, save_dir: str | None = None, **kwargs: Any) -> None:
        import wandb

        save_dir = "." if save_dir is None else save_dir
        self._run_id_file = None
        if kwargs.get("id") is None and kwargs.get("version") is None:
            # written when the run starts; one per run name (each shard of a job names its run)
            name = kwargs.get("name")
            self._run_id_file = Path(save_dir) / "wandb" / ("run-id" if not name else f"run-id-{_safe(name)}")
            kwargs["id"] = _kept_run_id(self._run_id_file) or uuid.uuid4().hex[:8]  # W&B's own ids look so
            kwargs["resume"] = kwargs.get("resume") or "allow"
        reason = None if offline or os.environ.get("WANDB_MODE") else _why_offline()
        if kwargs.get("settings") is None:
            kwargs["settings"] = wandb.Settings(silent=True)  # one line of ours instead of W&B's ten
        super().__init__(offline=offline or reason is not None, save_dir=save_dir, **kwargs)
        if self._wandb_init.get("anonymous") is None:
            self._wandb_init.pop("anonymous", None)  # Lightning passes None, and W&B warns that it "has no effect"
        self._offline_reason = reason

    @property
    @rank_zero_experiment
    def experiment(self):
        """The W&B run; when it starts, one line says where it is (online: its page; offline: how to upload it)."""
        starting = self._experiment is None
        if starting and self._save_dir:
            Path(self._save_dir).mkdir(parents=True, exist_ok=True)  # W&B warns about a folder that is not there yet
        if starting and self._run_id_file is not None and _kept_run_id(self._run_id_file) != self._wandb_init["id"]:
            self._run_id_file.parent.mkdir(parents=True, exist_ok=True)
            replace_atomically(self._run_id_file, lambda file: file.write(self._wandb_init["id"].encode()))
        run = super().experiment
        if starting and getattr(run, "dir", None):
            if run.offline:
                folder = Path(run.dir).parent
                why = f"{self._offline_reason}; " if self._offline_reason else ""
                rank_zero_info(f"W&B: {why}logging offline to {folder}; upload later with `wandb sync {folder}`")
            elif run.url:
                rank_zero_info(f"W&B: run {run.name} at {run.url}")
        return run


class SaveConfigToLoggers(SaveConfigCallback):
    """Writes ``config.yaml`` to the log folder and records the resolved config as each logger's hyper-parameters
    (the W&B run config), so runs can be compared by any option."""

    def save_config(self, trainer: Trainer, pl_module, stage: str) -> None:
        config = json.loads(self.parser.dump(self.config, format="json", skip_none=False))
        config.pop("config", None)  # the config files' paths
        for logger in trainer.loggers:
            logger.log_hyperparams(config)
