import csv
import re
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image

from helpers import ROOT, run_main

DEBUG = ["fit", "--config", "configs/default.yaml", "--config", "configs/debug.yaml"]


def redirect(tmp_path: Path) -> list[str]:
    return ["--output.dir", str(tmp_path / "out")]


def metrics(tmp_path: Path, version: int = 0) -> list[dict[str, str]]:
    with open(tmp_path / "out" / "logs" / f"version_{version}" / "metrics.csv") as file:
        return list(csv.DictReader(file))


def test_fit_writes_the_stylised_png(tmp_path, in_repo, capsys):
    code, _ = run_main(*DEBUG, *redirect(tmp_path))
    assert code == 0
    out = capsys.readouterr()
    with Image.open(tmp_path / "out" / "chelsea__swirls.png") as image:
        assert image.size == (64, 43) and image.mode == "RGB"
    assert "5/5" in out.out and "train/loss=" in out.out and "pairs=1/1" in out.out  # step k/N, loss, pairs
    assert "this run: 1 pair in" in out.out and "the job: 1 of 1 done" in out.out and "to go on" not in out.out
    rows = metrics(tmp_path)
    logged = {"train/loss", "train/content", "train/style", "train/style/relu5_1", "train/tv", "quality/final_ssim"}
    assert logged <= set(rows[0])
    assert [row["step"] for row in rows if row["train/loss"]] == ["0", "1", "2", "3", "4"]
    # Every file of the run under --output.dir: the image, the checkpoint, the logs (with the resolved config)
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == ["checkpoints", "chelsea__swirls.png", "logs"]
    assert (tmp_path / "out" / "logs" / "version_0" / "config.yaml").is_file()


def test_without_a_config_file_the_defaults_are_configs_default_yaml(in_repo, capsys):
    assert run_main("fit", "--print_config")[0] in (0, None)
    defaults = yaml.safe_load(capsys.readouterr().out)
    assert run_main("fit", "--config", "configs/default.yaml", "--print_config")[0] in (0, None)
    assert yaml.safe_load(capsys.readouterr().out) == defaults
    assert defaults["trainer"]["max_epochs"] == -1 and defaults["data"]["steps"] == 500  # not Lightning's 1000 epochs
    assert defaults["data"]["content"] == "examples/content/chelsea.png" and defaults["seed_everything"] == 0


def test_the_defaults_name_the_example_images_away_from_the_repository(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _ = run_main("fit")
    assert code == ("lightning-style: error: --data.content: the default, examples/content/chelsea.png, is not here: "
                    "it ships with the lightning-style repository (run from its root), or give your own image")


# Configs that other tests run end to end already, by the tests that do.
RUN_ELSEWHERE = {"debug.yaml": "test_fit_writes_the_stylised_png",
                 "lbfgs.yaml": "test_lbfgs_from_the_command_line", "fast.yaml": "test_lbfgs_from_the_command_line",
                 "masks.yaml": "test_masks_and_pyramid_from_the_command_line",
                 "pyramid.yaml": "test_masks_and_pyramid_from_the_command_line",
                 "wandb.yaml": "test_wandb.py::test_offline_wandb_run_without_credentials"}


@pytest.mark.parametrize("config", sorted(path.name for path in (ROOT / "configs").glob("*.yaml")
                                          if path.name not in RUN_ELSEWHERE))
def test_every_config_runs(config, tmp_path, monkeypatch, capsys):
    """Each shipped config that no other test runs, after the defaults as the README composes them, with random
    weights and 2 steps on the CPU: it parses, its classes are built, and it writes its result."""
    monkeypatch.chdir(ROOT)
    args = ["fit", "--config", "configs/default.yaml", "--config", f"configs/{config}", "--model.weights", "null",
            "--model.backbone", "vgg16", "--trainer.accelerator", "cpu", "--data.steps", "2", "--data.image_size",
            "64", "--trainer.enable_progress_bar", "false", *redirect(tmp_path)]
    if config == "multi_gpu.yaml":  # as shipped: DDP of one process on a CPU (two are tested apart)
        for name in ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "WORLD_SIZE", "LOCAL_RANK", "RANK"):
            monkeypatch.delenv(name, raising=False)  # restored afterwards: the run sets them in this process
    try:
        code, _ = run_main(*args)
    finally:
        if torch.distributed.is_initialized():  # the DDP run's process group, which Lightning leaves behind
            torch.distributed.destroy_process_group()
    out = capsys.readouterr().out
    assert code == 0
    assert list((tmp_path / "out").glob("*.png")) and "the job: " in out
    printed = run_main("fit", "--config", "configs/default.yaml", "--config", f"configs/{config}", "--print_config")
    assert printed[0] in (0, None) and "steps" not in yaml.safe_load(capsys.readouterr().out)["model"]


@pytest.fixture
def in_repo(monkeypatch):
    """The command line run in this process (``cli.main``) from the repository, as the console script would."""
    monkeypatch.chdir(ROOT)


@pytest.mark.parametrize("config", ["lbfgs.yaml", "fast.yaml"])
def test_lbfgs_from_the_command_line(tmp_path, in_repo, config):
    assert run_main(*DEBUG, "--config", f"configs/{config}", "--data.steps", "4", *redirect(tmp_path))[0] == 0
    losses = [float(row["train/loss"]) for row in metrics(tmp_path) if row["train/loss"]]
    assert len(losses) == 4 and losses[-1] < losses[0]


def test_masks_and_pyramid_from_the_command_line(tmp_path, in_repo):
    code, _ = run_main(*DEBUG, "--config", "configs/masks.yaml", "--config", "configs/pyramid.yaml",
                       "--data.image_size", "128", "--model.level_steps", "1", "--data.steps", "3", *redirect(tmp_path))
    assert code == 0
    with Image.open(tmp_path / "out" / "chelsea__swirls+embers.png") as image:
        assert image.size == (128, 85)
    assert [row["train/scale"] for row in metrics(tmp_path) if row["train/loss"]] == ["0.25", "0.5", "1.0"]


def test_resume_from_last_checkpoint(tmp_path, in_repo, capsys):
    assert run_main(*DEBUG, "--trainer.max_steps", "3", *redirect(tmp_path))[0] == 0
    first = capsys.readouterr()
    last = tmp_path / "out" / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["global_step"] == 3
    assert "the job: 0 of 1 done" in first.out
    assert "to go on: lightning-style fit" in first.out and first.out.rstrip().endswith("--ckpt_path last")
    assert "--trainer.max_steps" not in first.out.splitlines()[-1]  # it would stop the resumed run at once
    assert run_main(*DEBUG, *redirect(tmp_path), "--ckpt_path", "last")[0] == 0  # the same command goes on
    resumed = capsys.readouterr()
    assert "3/5" in resumed.out and "5/5" in resumed.out  # the bar goes on from step 3
    assert torch.load(last, weights_only=True)["global_step"] == 5
    assert "this run: 1 pair in" in resumed.out and "the job: 1 of 1 done" in resumed.out


def bad_input(case: str, tmp_path: Path) -> tuple[list[str], str]:
    """Command-line arguments that make one kind of bad input, and the error line expected for it."""
    photo = "examples/content/chelsea.png"
    if case == "empty":
        (tmp_path / "empty.png").touch()
        return ["--data.content", str(tmp_path / "empty.png")], r"content .*empty.png: the file is empty"
    if case == "text-as-jpg":
        (tmp_path / "notes.jpg").write_text("not a picture")
        return ["--data.style", str(tmp_path / "notes.jpg")], r"style .*notes.jpg: not a readable image"
    if case == "bomb":
        Image.new("1", (20000, 20000)).save(tmp_path / "huge.png")
        return ["--data.content", str(tmp_path / "huge.png")], r"content .*huge.png: too large, refused before decoding"
    return {
        "missing": (["--data.content", "no/such/photo.jpg"], r"content no/such/photo.jpg: no such file"),
        "unknown-layer": (["--model.content_layers", "[relu9_9]"],
                          r"VGGFeatures\(layers=\['relu9_9', .*\]\) names an unknown vgg16 layer, relu9_9"),
        "too-small": (["--data.image_size", "8"],
                      rf"--data.image_size 8 makes content {photo} 8x5 px, .* at least 16 px"),
        "zero-size": (["--data.image_size", "0"], r"--data.image_size 0 must be a whole number >= 1"),
        "negative-weight": (["--model.style_weight", "-1"], r"--model.style_weight -1.0 must be a finite number >= 0"),
        "zip-lengths": (["--data.content", "examples/content", "--data.pairing", "zip",
                         "--data.style", f"[examples/style/swirls.png, {photo}, {photo}]"],
                        r"--data.pairing zip needs as many content as style images \(or one of either\), got 2 and 3"),
        "bad-weights": (["--model.weights", "pyproject.toml"],
                        r"weights file pyproject.toml is not a PyTorch state_dict"),
        "output-not-writable": (["--output.dir", "pyproject.toml/out"],
                                r"--output.dir pyproject.toml/out cannot write there"),
        "pyramid-too-small": (["--model.levels", "3"],
                              rf"--data.image_size 64 makes content {photo} 64x43 px, .*levels.* at least 64 px"),
        "mask-shape": (["--config", "configs/masks.yaml",
                        "--data.masks", "[examples/style/swirls.png, examples/masks/right.png]"],
                       rf"mask examples/style/swirls.png: .* but content {photo} is 451x300 px: "
                       r"a mask needs the content's aspect ratio"),
    }[case]


@pytest.mark.parametrize(
    "case",
    ["missing", "empty", "text-as-jpg", "bomb", "unknown-layer", "too-small", "zero-size",
     "negative-weight", "zip-lengths", "bad-weights", "output-not-writable", "pyramid-too-small", "mask-shape"],
)
def test_bad_input_gives_one_line_and_writes_nothing(tmp_path, case, monkeypatch):
    (tmp_path / "in").mkdir()
    args, message = bad_input(case, tmp_path / "in")
    monkeypatch.chdir(ROOT)
    code, _ = run_main(*DEBUG, *redirect(tmp_path), *args)  # in-process: the same main() as the console script
    assert isinstance(code, str) and "\n" not in code, code
    assert re.fullmatch(f"lightning-style: error: {message}.*", code), code
    assert not (tmp_path / "out").exists()


def test_debug_switch_shows_the_traceback(tmp_path, in_repo, monkeypatch):
    from lightning_style import StyleTransferError

    monkeypatch.setenv("LIGHTNING_STYLE_DEBUG", "1")
    with pytest.raises(StyleTransferError, match="nope.png: no such file"):  # raised, not turned into one line
        run_main(*DEBUG, *redirect(tmp_path), "--data.content", "nope.png")


@pytest.mark.parametrize("args", [["--model.style_wieght", "3"], ["--data.image_size", "big"],
                                  ["--model.backbone", "resnet50"]])
def test_unknown_keys_wrong_types_and_choices_are_usage_errors(tmp_path, in_repo, capsys, args):
    code, stderr = run_main(*DEBUG, *redirect(tmp_path), *args, capsys=capsys)
    assert code == 2 and "Traceback" not in stderr
    assert args[0].lstrip("-").split(".")[-1] in stderr and args[1] in stderr
    if args[1] == "resnet50":
        assert "vgg19_bn" in stderr
    assert not (tmp_path / "out").exists()


def test_names_with_spaces_and_non_ascii(tmp_path, in_repo):
    from helpers import write_image

    content = write_image(tmp_path / "my photo é.png", seed=1)
    style = write_image(tmp_path / "peinture ü 絵.jpg", seed=2)
    assert run_main(*DEBUG, *redirect(tmp_path), "--data.content", str(content), "--data.style", str(style))[0] == 0
    assert (tmp_path / "out" / "my photo é__peinture ü 絵.png").is_file()


def test_the_help(in_repo, monkeypatch, capsys):
    """The help reads like the README: a description with examples, the style options first, real defaults, no
    reST markup, and no Trainer option that has no meaning here. (``python -m lightning_style`` runs a whole job in
    test_wandb.py.)"""
    monkeypatch.setenv("COLUMNS", "80")  # a terminal's width, whatever runs the tests
    assert run_main("fit", "--help")[0] == 0
    text = capsys.readouterr().out
    where = lambda option: text.index(f"\n  {option}")  # where the option is documented
    assert (text.index("Examples:") < where("--ckpt_path") < where("--data.content") < where("--model.backbone")
            < where("--trainer.accelerator"))
    assert text[: where("--data.content")].count("\n") < 45  # on the first screen, not after the Trainer's 400 lines
    devices = text[where("--trainer.devices"):where("--trainer.num_nodes")]
    assert "Default:" not in devices and "default: 1)" in devices  # one default per option: this command's
    assert "DeepSpeedStrategy" not in text and "XLAStrategy" not in text  # not offered: check_trainer refuses them
    for option in ["--model.style_weight", "--data.pairing", "--output.dir", "--model.optimizer", "--ckpt_path"]:
        assert option in text
    assert "default: examples/content/chelsea.png" in " ".join(text.split()) and "required" not in text
    assert not re.search(r"``|:(class|mod|meth|func|attr):", text)
    assert "--trainer.limit_val_batches" not in text and "--trainer.accumulate_grad_batches" not in text


def test_the_command_says_what_fit_does(capsys):
    assert run_main("--help")[0] in (0, None)
    text = " ".join(capsys.readouterr().out.split())
    assert "fit paint the content images in the style of the style images" in text
    assert "optimization routine" not in text  # the Trainer's words for fit


def test_a_missing_photo_is_found_before_any_weights_are_fetched(tmp_path, in_repo, monkeypatch):
    """The data's file checks come first: a typo costs no 548 MB download."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    for variable in ["http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"]:
        monkeypatch.setenv(variable, "http://127.0.0.1:9")  # a download would fail, with another message
    code, _ = run_main("fit", "--data.content", "nothere.jpg")
    assert code == "lightning-style: error: content nothere.jpg: no such file"
    assert not (tmp_path / "hub").exists()
