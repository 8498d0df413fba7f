import re
from pathlib import Path

import pytest
import torch
from PIL import Image

from conftest import ROOT, run_cli

DEBUG = ["fit", "--config", "configs/default.yaml", "--config", "configs/debug.yaml"]


def redirect(tmp_path: Path) -> list[str]:
    return ["--output.dir", str(tmp_path / "out"), "--trainer.logger.init_args.save_dir", str(tmp_path / "logs")]


def test_fit_writes_the_stylised_png(tmp_path):
    result = run_cli(*DEBUG, *redirect(tmp_path))
    assert result.returncode == 0, result.stderr
    with Image.open(tmp_path / "out" / "chelsea__swirls.png") as image:
        assert image.size == (64, 43) and image.mode == "RGB"
    assert "5/5" in result.stdout and "train/loss=" in result.stdout  # the progress bar shows step k/N and the loss
    metrics = (tmp_path / "logs" / "logs" / "version_0" / "metrics.csv").read_text().splitlines()
    assert {"train/loss", "train/content", "train/style", "train/style/relu5_1", "train/tv"} <= set(metrics[0].split(","))
    assert len(metrics) == 6


@pytest.mark.parametrize("config", sorted(path.name for path in (ROOT / "configs").glob("*.yaml")))
def test_every_config_parses(config):
    result = run_cli("fit", "--config", "configs/default.yaml", "--config", f"configs/{config}", "--print_config")
    assert result.returncode == 0, result.stderr
    assert "class_path: lightning_style" not in result.stdout and "model:" in result.stdout


def test_lbfgs_from_the_command_line(tmp_path):
    result = run_cli(*DEBUG, "--config", "configs/lbfgs.yaml", "--trainer.max_steps", "4", *redirect(tmp_path))
    assert result.returncode == 0, result.stderr
    losses = [float(line.split(",")[3]) for line in (tmp_path / "logs/logs/version_0/metrics.csv").read_text().splitlines()[1:]]
    assert losses[-1] < losses[0]


def test_resume_from_last_checkpoint(tmp_path):
    first = run_cli(*DEBUG, "--trainer.max_steps", "3", *redirect(tmp_path))
    assert first.returncode == 0, first.stderr
    last = tmp_path / "logs" / "logs" / "version_0" / "checkpoints" / "last.ckpt"
    saved = torch.load(last, weights_only=True)
    assert saved["global_step"] == 3
    resumed = run_cli(*DEBUG, "--trainer.max_steps", "5", "--ckpt_path", str(last), *redirect(tmp_path))
    assert resumed.returncode == 0, resumed.stderr
    assert "Restored all states" in resumed.stderr and "3/5" in resumed.stdout and "5/5" in resumed.stdout
    final = torch.load(tmp_path / "logs" / "logs" / "version_1" / "checkpoints" / "last.ckpt", weights_only=True)
    assert final["global_step"] == 5


@pytest.mark.parametrize(
    "args, message",
    [
        (["--data.content", "no/such/photo.jpg"], r"content no/such/photo.jpg: no such file"),
        (["--model.content_layers", "[relu9_9]"], r"unknown vgg16 layer 'relu9_9'"),
        (["--data.image_size", "8"], r"content examples/content/chelsea.png: 8x5 px once resized, .* at least 16 px"),
        (["--model.weights", "pyproject.toml"], r"weights file pyproject.toml is not a PyTorch state_dict"),
    ],
)
def test_bad_input_gives_one_line_and_writes_nothing(tmp_path, args, message):
    result = run_cli(*DEBUG, *redirect(tmp_path), *args)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert re.fullmatch(f"lightning-style: error: {message}.*", last), result.stderr
    assert not (tmp_path / "out").exists() and not (tmp_path / "logs").exists()


def test_unknown_backbone_is_a_usage_error(tmp_path):
    result = run_cli(*DEBUG, *redirect(tmp_path), "--model.backbone", "resnet50")
    assert result.returncode != 0 and "resnet50" in result.stderr and "vgg19_bn" in result.stderr


def test_python_dash_m_and_help():
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "lightning_style", "fit", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0
    for option in ["--model.style_weight", "--data.pairing", "--output.dir", "--model.optimizer", "--ckpt_path"]:
        assert option in result.stdout
