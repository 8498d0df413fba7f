"""Real two-process runs (gloo on CPU) through the console script, compared pair by pair with one process: each
process optimises its own batches and exchanges no image, gradient or optimiser state."""

from pathlib import Path

import pytest
import torch

from collect_results import load_results
from conftest import ROOT, run_cli, write_image

DEBUG = ["fit", "--config", "configs/default.yaml", "--config", "configs/debug.yaml", "--model.init", "noise",
         "--trainer.callbacks+=collect_results.SaveFinished"]


@pytest.fixture
def real_weights(hed_weights) -> list[str]:
    # With random weights many pixel gradients are ~0, and Adam's first steps (lr * sign) would turn the last-bit
    # differences between a batch of 2 and a batch of 1 into lr-sized ones; real features have real gradients.
    return ["--model.weights", str(hed_weights)]


@pytest.fixture
def three_pairs(tmp_path, real_weights) -> list[str]:
    """Three contents (two shapes) and one style: with batches of 2, one process gets the two pairs of one shape
    and the other the pair of the other shape."""
    for seed, size in [(1, (48, 40)), (2, (48, 40)), (3, (40, 56))]:
        write_image(tmp_path / "contents" / f"photo{seed}.png", size=size, seed=seed)
    write_image(tmp_path / "paint.png", seed=9)
    return ["--data.content", str(tmp_path / "contents"), "--data.style", str(tmp_path / "paint.png"),
            "--data.batch_size", "2", *real_weights]


def fit(tmp_path: Path, name: str, devices: int, *args: str, env: dict | None = None) -> dict[str, torch.Tensor]:
    """Run the console script; return every finished pair's float image."""
    strategy = ["--trainer.devices", str(devices), "--trainer.strategy", "ddp" if devices > 1 else "auto"]
    folder = tmp_path / name
    env = {"PYTHONPATH": str(ROOT / "tests"), "LIGHTNING_STYLE_TEST_RESULTS": str(folder / "results"), **(env or {})}
    result = run_cli(*DEBUG, *strategy, *args, "--output.dir", str(folder / "out"),
                     "--trainer.logger.init_args.save_dir", str(folder / "logs"), env=env)
    assert result.returncode == 0, result.stderr
    return load_results(folder / "results")


def assert_same_pairs(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=1e-5, rtol=0, msg=name)


def test_adam_two_processes_equal_one_and_resume_on_one(tmp_path, three_pairs):
    one = fit(tmp_path, "one", 1, *three_pairs, "--model.steps", "4")
    two = fit(tmp_path, "two", 2, *three_pairs, "--model.steps", "4")
    assert len(one) == 3 and not torch.equal(one["photo1__paint"], one["photo2__paint"])
    assert_same_pairs(two, one)
    assert sorted(path.name for path in (tmp_path / "two" / "out").iterdir()) == [
        "checkpoints", "photo1__paint.png", "photo2__paint.png", "photo3__paint.png"]

    # Stopped after 2 of 4 steps on two processes, resumed on one: the batches in progress start again there.
    fit(tmp_path, "half", 2, *three_pairs, "--model.steps", "4", "--trainer.max_steps", "2")
    last = tmp_path / "half/out/checkpoints/last.ckpt"
    resumed = fit(tmp_path, "half", 1, *three_pairs, "--model.steps", "4", "--ckpt_path", str(last))
    assert_same_pairs(resumed, one)


def test_seven_pairs_in_batches_of_two_on_two_processes(tmp_path, real_weights):
    for seed in range(7):
        write_image(tmp_path / "contents" / f"p{seed}.png", size=(40, 32) if seed < 4 else (32, 40), seed=seed)
    write_image(tmp_path / "paint.png", seed=9)
    args = ["--data.content", str(tmp_path / "contents"), "--data.style", str(tmp_path / "paint.png"),
            "--data.batch_size", "2", "--model.steps", "3", *real_weights]
    one, two = fit(tmp_path, "one", 1, *args), fit(tmp_path, "two", 2, *args)
    assert len(one) == 7  # none dropped, none done twice (a pair done twice would be saved twice: same file)
    assert_same_pairs(two, one)


def test_lbfgs_two_processes_equal_one(tmp_path, real_weights):
    # L-BFGS's first step is tiny, so its curvature estimate magnifies last-bit differences (measured: 1e-3 after
    # 4 steps when one process runs 2 threads and each of two runs 1, or when a batch of 2 becomes two of 1). With
    # the same batches (three shapes: a batch each) and the same thread count, sharding must change nothing.
    for seed, size in [(1, (48, 40)), (2, (40, 56)), (3, (56, 32))]:
        write_image(tmp_path / "contents" / f"photo{seed}.png", size=size, seed=seed)
    lbfgs = ["--data.content", str(tmp_path / "contents"), "--config", "configs/lbfgs.yaml", "--model.steps", "4",
             *real_weights]
    one_thread = {"OMP_NUM_THREADS": "1"}
    two, one = fit(tmp_path, "two", 2, *lbfgs, env=one_thread), fit(tmp_path, "one", 1, *lbfgs, env=one_thread)
    assert one.keys() == two.keys() and len(one) == 3
    for name in one:
        assert torch.equal(two[name], one[name]), name


def test_more_processes_than_pairs(tmp_path, real_weights):
    write_image(tmp_path / "photo.png", seed=1)
    only = ["--data.content", str(tmp_path / "photo.png"), "--model.steps", "3", *real_weights]
    assert_same_pairs(fit(tmp_path, "two", 2, *only), fit(tmp_path, "one", 1, *only))
