"""What the tests share besides fixtures: small real image files, short fits through the Python API, the command
line in this process or as the console script, and the ``job`` fixture's command (tests/conftest.py)."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from PIL import Image

from lightning_style import PairDataModule, StyleTransfer
from lightning_style.batch import PairResult
from lightning_style.callbacks import ImageWriter

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("LIGHTNING_STYLE_CACHE", Path.home() / ".cache" / "lightning-style"))


def write_image(path: Path, size: tuple[int, int] = (48, 40), seed: int = 0, mode: str = "RGB") -> Path:
    """A smooth random colour image of ``size`` (width, height), saved to ``path``."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    image = Image.fromarray(coarse).resize(size, Image.Resampling.BICUBIC).convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


class Collect(pl.Callback):
    """Keeps every finished pair's published result (:class:`~lightning_style.batch.PairResult`), by pair name."""

    def __init__(self) -> None:
        self.results: dict[str, PairResult] = {}

    def on_train_batch_end(self, trainer, pl_module, *args) -> None:
        if pl_module.result is not None:
            self.results.update((pair.name, pair) for pair in pl_module.result)


def results(trainer: pl.Trainer) -> dict[str, PairResult]:
    """The finished pairs of a ``fit()`` run, as the module published them."""
    return next(c for c in trainer.callbacks if isinstance(c, Collect)).results


def collected(trainer: pl.Trainer) -> dict[str, torch.Tensor]:
    """The finished pairs' images of a ``fit()`` run (float, as the module made them)."""
    return {name: pair.image.cpu().clone() for name, pair in results(trainer).items()}


def fit(
    out: Path,
    content,
    style,
    *,
    steps: int = 3,
    max_steps: int = -1,
    batch_size: int = 4,
    image_size: int = 32,
    style_scale: float = 1.0,
    pairing: str = "product",
    style_weights: list[float] | None = None,
    masks: list[str] | None = None,
    ckpt_path: str | None = None,
    seed: int = 0,
    init_image: str | None = None,
    num_workers: int = 0,
    trainer_kwargs: dict | None = None,
    model: StyleTransfer | None = None,
    callbacks: tuple = (),
    **model_kwargs,
) -> tuple[StyleTransfer, pl.Trainer]:
    """A short CPU fit through the Python API with random vgg16 weights (unless given): ``steps`` per pair,
    ``max_steps`` an overall cap (a run stopped early, to resume)."""
    pl.seed_everything(seed, verbose=False)
    if model is None:
        model = StyleTransfer(**{"backbone": "vgg16", "weights": None, **model_kwargs})
    data = PairDataModule(content, style, pairing=pairing, image_size=image_size, style_scale=style_scale,
                          style_weights=style_weights, masks=masks, batch_size=batch_size, steps=steps,
                          init=init_image, num_workers=num_workers)
    trainer = pl.Trainer(
        **{
            "accelerator": "cpu",
            "max_steps": max_steps,
            "max_epochs": -1,  # the module stops the run when its plan is done
            "logger": False,
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "default_root_dir": out,
            "callbacks": [ImageWriter(str(out / "images")), Collect(), *callbacks],
            **(trainer_kwargs or {}),
        }
    )
    trainer.fit(model, datamodule=data, ckpt_path=ckpt_path)
    return model, trainer


def resumed_and_straight(out: Path, content, style, *, stop_at: int, **kwargs) -> tuple[tuple, tuple]:
    """The same ``fit`` twice: stopped at global step ``stop_at`` (``last.ckpt`` saved there) and resumed from that
    checkpoint, and straight through: ``((resumed model, its trainer), (straight model, its trainer))``."""
    from pytorch_lightning.callbacks import ModelCheckpoint

    fit(out / "first", content, style, max_steps=stop_at, callbacks=[ModelCheckpoint(out / "ckpt", save_last=True)],
        **kwargs)
    resumed = fit(out / "resumed", content, style, ckpt_path=str(out / "ckpt" / "last.ckpt"), **kwargs)
    return resumed, fit(out / "straight", content, style, **kwargs)


def assert_same_results(trainer: pl.Trainer, other: pl.Trainer, atol: float = 1e-6) -> None:
    """Both runs published the same pairs with the same images (to ``atol``)."""
    mine, theirs = results(trainer), results(other)
    assert sorted(mine) == sorted(theirs) and mine
    for name, pair in mine.items():
        torch.testing.assert_close(pair.image, theirs[name].image, atol=atol, rtol=0)


def run_cli(*args: str, cwd: Path = ROOT, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run the installed ``lightning-style`` console script."""
    return subprocess.run(
        [str(Path(sys.executable).with_name("lightning-style")), *args], cwd=cwd, capture_output=True, text=True,
        timeout=timeout, stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})},
    )


def run_main(*args: str, capsys=None) -> tuple[int | str, str]:
    """Run the command line in this process (``cli.main``): ``(exit code or error line, stderr)``."""
    from lightning_style.cli import main

    try:
        main(list(args))
        code = 0
    except SystemExit as exit:
        code = exit.code
    return code, (capsys.readouterr().err if capsys else "")


# --- the command line's job, run in this process (test_record.py, test_checkpoint_safety.py) -------------
DEBUG = ["fit", "--config", "configs/debug.yaml", "--trainer.logger", "false", "--trainer.enable_progress_bar", "false"]


def stamps(folder: Path) -> dict[str, int]:
    """Each result's modification time: a result that is not rewritten keeps it."""
    return {path.name: path.stat().st_mtime_ns for path in folder.glob("*.png")}


def last(job) -> Path:
    return job.out / "checkpoints" / "last.ckpt"
