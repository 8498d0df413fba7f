"""The image logger with the real wandb package (offline), TensorBoard and CSV."""

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger

from lightning_style.callbacks import ImageLogger

from conftest import fit, run_cli
from wandb_records import config, history_keys, read_records

PAIRS = ["astronaut__swirls", "chelsea__swirls"]


@pytest.mark.parametrize("devices", [1, 2], ids=["1-process", "2-process-ddp"])
def test_offline_wandb_run_without_credentials(tmp_path, devices):
    env = {"HOME": str(tmp_path), "WANDB_API_KEY": "", "WANDB_MODE": "", "NETRC": str(tmp_path / "none")}
    result = run_cli(
        "fit", "--config", "configs/default.yaml", "--config", "configs/debug.yaml", "--config", "configs/wandb.yaml",
        "--data.content", "examples/content", "--trainer.max_steps", "4", "--images.every_n_steps", "2",
        "--trainer.logger.init_args.save_dir", str(tmp_path), "--output.dir", str(tmp_path / "out"),
        "--trainer.devices", str(devices), "--trainer.strategy", "ddp" if devices > 1 else "auto", env=env,
    )
    assert result.returncode == 0, result.stderr
    notice = [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("W&B:")]
    assert len(notice) == 1 and "no W&B credentials" in notice[0] and "wandb sync" in notice[0]

    (run,) = (tmp_path / "wandb").glob("offline-run-*")  # one run: only rank 0 logs, with every pair
    images = sorted((run / "files" / "media" / "images" / "images").glob("*.png"))
    assert Counter(path.name.split("_")[0] + "__swirls" for path in images) == {pair: 2 for pair in PAIRS}  # steps 2, 4
    for path in images:
        pixels = np.asarray(Image.open(path))
        assert pixels.shape[0] == (43 if path.name.startswith("chelsea") else 64)  # the content's height at 64 px
        assert pixels.shape[2] == 3 and pixels.std() > 20 and 20 < pixels.mean() < 235  # neither blank nor black

    records = read_records(next(run.glob("run-*.wandb")))
    keys = history_keys(records)
    for key in ["train/loss", "train/content", "train/style", "train/style/relu1_1", "train/style/relu5_1", "train/tv"]:
        assert key in keys
    for pair in PAIRS:
        assert {f"quality/ssim/{pair}", f"quality/psnr/{pair}", f"images/{pair}/captions"} <= keys
    recorded = config(records)
    assert json.loads(recorded["model"])["style_weight"] == 100.0
    assert json.loads(recorded["data"])["image_size"] == 64
    assert json.loads(recorded["trainer"])["max_steps"] == 4


def test_tensorboard_gets_images_and_csv_gets_the_figures(tmp_path, images):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tensorboard, csv = TensorBoardLogger(tmp_path, name="tb"), CSVLogger(tmp_path, name="csv")
    fit(tmp_path, images["content"], [images["style"], images["style2"]], steps=4,
        trainer_kwargs={"logger": [tensorboard, csv]}, callbacks=[ImageLogger(every_n_steps=2)])
    events = EventAccumulator(tensorboard.log_dir, size_guidance={"images": 0}).Reload()
    assert sorted(events.Tags()["images"]) == ["images/photo__paint", "images/photo__paint2"]
    for tag in events.Tags()["images"]:
        logged = events.Images(tag)
        assert [image.step for image in logged] == [2, 4]
        assert (logged[0].height, logged[0].width) == (27, 32 + 4 + 32 + 4 + 32)
    header, *rows = (Path(csv.log_dir) / "metrics.csv").read_text().splitlines()
    columns = header.split(",")
    assert {"quality/ssim", "quality/psnr/photo__paint", "quality/ssim/photo__paint2"} <= set(columns)
    ssim = [float(row.split(",")[columns.index("quality/ssim")]) for row in rows if row.split(",")[columns.index("quality/ssim")]]
    assert len(ssim) == 2 and all(0 < value <= 1 for value in ssim)
