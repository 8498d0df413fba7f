import csv
import re
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image

from conftest import ROOT, run_cli, run_main

DEBUG = ["fit", "--config", "configs/default.yaml", "--config", "configs/debug.yaml"]


def redirect(tmp_path: Path) -> list[str]:
    return ["--output.dir", str(tmp_path / "out"), "--trainer.logger.init_args.save_dir", str(tmp_path / "logs")]


def metrics(tmp_path: Path, version: int = 0) -> list[dict[str, str]]:
    with open(tmp_path / "logs" / "logs" / f"version_{version}" / "metrics.csv") as file:
        return list(csv.DictReader(file))


def test_fit_writes_the_stylised_png(tmp_path):
    result = run_cli(*DEBUG, *redirect(tmp_path))
    assert result.returncode == 0, result.stderr
    with Image.open(tmp_path / "out" / "chelsea__swirls.png") as image:
        assert image.size == (64, 43) and image.mode == "RGB"
    assert "5/5" in result.stdout and "train/loss=" in result.stdout  # the progress bar shows step k/N and the loss
    rows = metrics(tmp_path)
    assert {"train/loss", "train/content", "train/style", "train/style/relu5_1", "train/tv", "quality/ssim"} <= set(rows[0])
    assert [row["step"] for row in rows if row["train/loss"]] == ["0", "1", "2", "3", "4"]


@pytest.mark.parametrize("config", sorted(path.name for path in (ROOT / "configs").glob("*.yaml")))
def test_every_config_parses(config):
    result = run_cli("fit", "--config", "configs/default.yaml", "--config", f"configs/{config}", "--print_config")
    assert result.returncode == 0, result.stderr
    printed = yaml.safe_load(result.stdout)
    assert {"trainer", "model", "data", "output", "images"} <= set(printed)


def test_lbfgs_from_the_command_line(tmp_path):
    result = run_cli(*DEBUG, "--config", "configs/lbfgs.yaml", "--trainer.max_steps", "4", *redirect(tmp_path))
    assert result.returncode == 0, result.stderr
    losses = [float(row["train/loss"]) for row in metrics(tmp_path) if row["train/loss"]]
    assert len(losses) == 4 and losses[-1] < losses[0]


def test_masks_and_pyramid_from_the_command_line(tmp_path):
    result = run_cli(*DEBUG, "--config", "configs/masks.yaml", "--config", "configs/pyramid.yaml", "--data.image_size", "128",
                     "--model.level_steps", "1", "--trainer.max_steps", "3", *redirect(tmp_path))
    assert result.returncode == 0, result.stderr
    with Image.open(tmp_path / "out" / "chelsea__swirls+embers.png") as image:
        assert image.size == (128, 85)
    assert [row["train/scale"] for row in metrics(tmp_path) if row["train/loss"]] == ["0.25", "0.5", "1.0"]


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


def bad_input(case: str, tmp_path: Path) -> tuple[list[str], str]:
    """Command-line arguments that make one kind of bad input, and the error line expected for it."""
    photo = "examples/content/chelsea.png"
    if case == "empty":
        (tmp_path / "empty.png").touch()
        return ["--data.content", str(tmp_path / "empty.png")], r"content .*empty.png: the file is empty"
    if case == "truncated":
        data = (ROOT / photo).read_bytes()
        (tmp_path / "cut.png").write_bytes(data[: len(data) // 3])
        return ["--data.content", str(tmp_path / "cut.png")], r"content .*cut.png: truncated or corrupt image"
    if case == "text-as-jpg":
        (tmp_path / "notes.jpg").write_text("not a picture")
        return ["--data.style", str(tmp_path / "notes.jpg")], r"style .*notes.jpg: not a readable image"
    if case == "bomb":
        Image.new("1", (20000, 20000)).save(tmp_path / "huge.png")
        return ["--data.content", str(tmp_path / "huge.png")], r"content .*huge.png: too large, refused before decoding"
    return {
        "missing": (["--data.content", "no/such/photo.jpg"], r"content no/such/photo.jpg: no such file"),
        "unknown-layer": (["--model.content_layers", "[relu9_9]"], r"unknown vgg16 layer 'relu9_9'"),
        "too-small": (["--data.image_size", "8"], rf"content {photo}: 8x5 px once resized, .* at least 16 px"),
        "zero-size": (["--data.image_size", "0"], r"--data.image_size must be a positive number of pixels, got 0"),
        "negative-weight": (["--model.style_weight", "-1"], r"--model.style_weight must be a finite number >= 0, got -1.0"),
        "zip-lengths": (["--data.content", "examples/content", "--data.pairing", "zip",
                         "--data.style", f"[examples/style/swirls.png, {photo}, {photo}]"],
                        r"--data.pairing zip needs as many content as style images, got 2 and 3"),
        "bad-weights": (["--model.weights", "pyproject.toml"], r"weights file pyproject.toml is not a PyTorch state_dict"),
        "output-not-writable": (["--output.dir", "pyproject.toml/out"], r"--output.dir pyproject.toml/out: cannot write there"),
        "pyramid-too-small": (["--model.levels", "3"], rf"content {photo}: 64x43 px once resized, .*--model.levels.* at least 64 px"),
        "mask-shape": (["--config", "configs/masks.yaml", "--data.masks", "[examples/style/swirls.png, examples/masks/right.png]"],
                       rf"mask examples/style/swirls.png: .* but content {photo} is 451x300 px: a mask needs the content's aspect ratio"),
    }[case]


@pytest.mark.parametrize(
    "case",
    ["missing", "empty", "truncated", "text-as-jpg", "bomb", "unknown-layer", "too-small", "zero-size",
     "negative-weight", "zip-lengths", "bad-weights", "output-not-writable", "pyramid-too-small", "mask-shape"],
)
def test_bad_input_gives_one_line_and_writes_nothing(tmp_path, case, monkeypatch):
    (tmp_path / "in").mkdir()
    args, message = bad_input(case, tmp_path / "in")
    monkeypatch.chdir(ROOT)
    code, _ = run_main(*DEBUG, *redirect(tmp_path), *args)  # in-process: the same main() as the console script
    assert isinstance(code, str) and "\n" not in code and re.fullmatch(f"lightning-style: error: {message}.*", code), code
    assert not (tmp_path / "out").exists() and not (tmp_path / "logs").exists()


def test_debug_switch_shows_the_traceback(tmp_path):
    result = run_cli(*DEBUG, *redirect(tmp_path), "--data.content", "nope.png", env={"LIGHTNING_STYLE_DEBUG": "1"})
    assert result.returncode != 0 and "Traceback" in result.stderr and "StyleTransferError" in result.stderr


@pytest.mark.parametrize("args", [["--model.style_wieght", "3"], ["--data.image_size", "big"]])
def test_unknown_keys_and_wrong_types_are_usage_errors(tmp_path, args):
    result = run_cli(*DEBUG, *redirect(tmp_path), *args)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert args[0].lstrip("-").split(".")[-1] in result.stderr
    assert not (tmp_path / "out").exists() and not (tmp_path / "logs").exists()


def test_names_with_spaces_and_non_ascii(tmp_path):
    from conftest import write_image

    content = write_image(tmp_path / "my photo é.png", seed=1)
    style = write_image(tmp_path / "peinture ü 絵.jpg", seed=2)
    result = run_cli(*DEBUG, *redirect(tmp_path), "--data.content", str(content), "--data.style", str(style))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "my photo é__peinture ü 絵.png").is_file()


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
