"""The image logger with the real wandb package (offline), TensorBoard and CSV."""

import json
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger

from lightning_style.image_logger import ImageLogger, Row

from helpers import ROOT, fit, run_cli, run_main
from wandb_records import config, history_keys, read_records

PAIRS = ["astronaut__swirls", "chelsea__swirls"]
WANDB_JOB = ["fit", "--config", "configs/default.yaml", "--config", "configs/debug.yaml", "--config",
             "configs/wandb.yaml", "--data.content", "examples/content", "--data.steps", "4",
             "--images.every_n_steps", "2"]


def no_credentials(home: Path) -> dict[str, str]:
    """The environment of a machine that never logged in to W&B."""
    return {"WANDB_API_KEY": "", "WANDB_MODE": "", "HOME": str(home), "NETRC": str(home / "none")}


def test_offline_wandb_run_without_credentials(tmp_path, monkeypatch, caplog):
    """One process, the command line in this process (the notice is a log record here: a real process prints it,
    as the two-process test below checks)."""
    import wandb

    monkeypatch.chdir(ROOT)
    for name, value in no_credentials(tmp_path).items():
        monkeypatch.setenv(name, value)
    try:
        with caplog.at_level("INFO"):
            code, _ = run_main(*WANDB_JOB, "--trainer.enable_progress_bar", "false",
                               "--output.dir", str(tmp_path / "out"))
    finally:
        wandb.teardown()  # W&B's service, started in this process: later runs must not log through it
    assert code == 0
    assert_offline_run(tmp_path / "out", [record.getMessage() for record in caplog.records], devices=1)


@pytest.mark.slow
def test_offline_wandb_run_of_two_processes_without_credentials(tmp_path):
    """Two processes (DDP, the console script): one W&B run, rank 0's, with every process's finished pairs."""
    result = run_cli(*WANDB_JOB, "--output.dir", str(tmp_path / "out"), "--trainer.devices", "2",
                     "--trainer.strategy", "ddp", env=no_credentials(tmp_path))
    assert result.returncode == 0, result.stderr
    assert_offline_run(tmp_path / "out", (result.stdout + result.stderr).splitlines(), devices=2)


def assert_offline_run(out: Path, printed: list[str], devices: int) -> None:
    """The W&B notice printed once, and the offline run under ``out``: pictures of the batch in progress and of
    every finished pair, the table of pairs, the figures and the config."""
    notice = [line for line in printed if line.startswith("W&B:")]
    assert len(notice) == 1 and "no W&B credentials" in notice[0] and "wandb sync" in notice[0]

    (run,) = (out / "wandb").glob("offline-run-*")  # under --output.dir; one run: only rank 0 logs
    # The batch in progress, one picture per pair under one key: the two pairs have two shapes, so two batches,
    # one after the other on one process (steps 2, 4, 6, 8), or one on each of two (rank 0's at steps 2, 4).
    images = sorted((run / "files" / "media" / "images" / "images").glob("batch_*.png"))
    assert len(images) == (4 if devices == 1 else 2)
    for path in images:
        pixels = np.asarray(Image.open(path))
        assert pixels.shape[2] == 3 and pixels.std() > 20 and 20 < pixels.mean() < 235  # neither blank nor black
    # Finished pairs' results as pictures, files of the run (offline tables hold the word "Image"): one per pair.
    finished = sorted((run / "files" / "media" / "images" / "images").glob("finished_*.png"))
    assert len(finished) == len(PAIRS)
    for path in finished:
        pixels = np.asarray(Image.open(path))
        assert pixels.std() > 20 and 20 < pixels.mean() < 235
    # Finished pairs, from every process, as rows of one table logged incrementally.
    tables = [json.loads(path.read_text()) for path in (run / "files" / "media" / "table").glob("pairs_*.table.json")]
    assert tables and all(table["columns"] == [field.name for field in fields(Row)] for table in tables)
    rows = [dict(zip(table["columns"], row, strict=True)) for table in tables for row in table["data"]]
    assert sorted(row["pair"] for row in rows) == PAIRS
    assert all(0 < row["ssim"] <= 1 and row["loss"] > 0 for row in rows)

    records = read_records(next(run.glob("run-*.wandb")))
    keys = history_keys(records)
    for key in ["train/loss", "train/content", "train/style", "train/style/relu1_1", "train/style/relu5_1", "train/tv",
                "quality/ssim", "quality/final_ssim", "pairs/_type"]:
        assert key in keys, key
    assert not [key for key in keys if key.startswith("images/") and "__" in key]  # no panel per pair
    recorded = config(records)
    assert json.loads(recorded["model"])["style_weight"] == 100.0
    assert json.loads(recorded["data"])["image_size"] == 64 and json.loads(recorded["data"])["steps"] == 4


def test_tensorboard_gets_images_and_csv_gets_the_figures(tmp_path, images):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tensorboard, csv = TensorBoardLogger(tmp_path, name="tb"), CSVLogger(tmp_path, name="csv")
    fit(tmp_path, images["content"], [images["style"], images["style2"]], steps=4,
        trainer_kwargs={"logger": [tensorboard, csv]}, callbacks=[ImageLogger(every_n_steps=2)])
    events = EventAccumulator(tensorboard.log_dir, size_guidance={"images": 0}).Reload()
    assert events.Tags()["images"] == ["images/batch"]  # one tag, whatever the number of pairs
    logged = events.Images("images/batch")
    assert [image.step for image in logged] == [2, 4]
    assert (logged[0].height, logged[0].width) == (27, 2 * (32 + 4 + 32 + 4 + 32))  # the 2 pairs side by side
    header, *rows = (Path(csv.log_dir) / "metrics.csv").read_text().splitlines()
    columns = header.split(",")
    assert {"quality/ssim", "quality/psnr", "quality/final_ssim", "quality/final_psnr"} <= set(columns)
    ssim_column = columns.index("quality/ssim")
    ssim = [float(row.split(",")[ssim_column]) for row in rows if row.split(",")[ssim_column]]
    assert len(ssim) == 2 and all(0 < value <= 1 for value in ssim)


def test_a_batch_shorter_than_the_interval_is_shown_once(tmp_path, images):
    """Two batches of 4 steps, checked every 2, pictures every 100 steps: each batch in progress is shown once, at
    its check half-way (steps 2 and 6), as its images were then."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from helpers import write_image

    tall = write_image(tmp_path / "in" / "tall.png", size=(30, 60), seed=5)  # another shape: another batch
    tensorboard = TensorBoardLogger(tmp_path, name="tb")
    fit(tmp_path, [images["content"], tall], images["style"], steps=4, check_every_n_steps=2,
        trainer_kwargs={"logger": [tensorboard]}, callbacks=[ImageLogger(every_n_steps=100)])
    events = EventAccumulator(tensorboard.log_dir, size_guidance={"images": 0}).Reload()
    assert [image.step for image in events.Images("images/batch")] == [2, 6]
