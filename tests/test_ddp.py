"""Real two-process runs (gloo on CPU) through the console script, compared pair by pair with one process: each
process optimises its own batches and exchanges no image, gradient or optimiser state."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lightning_style.shards import shard_of

from collect_results import load_results
from helpers import ROOT, run_cli, run_main, write_image

pytestmark = pytest.mark.slow  # end-to-end: python -m pytest -m 'not slow' skips them

DEBUG = ["fit", "--config", "configs/default.yaml", "--config", "configs/debug.yaml", "--model.init", "noise",
         "--trainer.callbacks+=collect_results.SaveFinished"]


@pytest.fixture
def real_weights(hed_weights) -> list[str]:
    # With random weights many pixel gradients are ~0, and Adam's first steps (lr * sign) would turn the last-bit
    # differences between a batch of 2 and a batch of 1 into lr-sized ones; real features have real gradients.
    return ["--model.weights", str(hed_weights)]


@pytest.fixture
def seven_pairs(tmp_path, real_weights) -> list[str]:
    """Seven contents of two shapes and one style, in batches of 2: batches of 2, 2 | 2, 1 pairs, dealt to two
    processes (the plan splits none: four batches)."""
    for seed in range(7):
        write_image(tmp_path / "contents" / f"p{seed}.png", size=(40, 32) if seed < 4 else (32, 40), seed=seed)
    write_image(tmp_path / "paint.png", seed=9)
    return ["--data.content", str(tmp_path / "contents"), "--data.style", str(tmp_path / "paint.png"),
            "--data.batch_size", "2", *real_weights]


def fit(tmp_path: Path, name: str, devices: int, *args: str, env: dict | None = None) -> dict[str, torch.Tensor]:
    """Run the command line (two processes: the console script; one: in this process, which saves a start-up);
    return every finished pair's float image."""
    strategy = ["--trainer.devices", str(devices), "--trainer.strategy", "ddp" if devices > 1 else "auto"]
    folder = tmp_path / name
    env = {"PYTHONPATH": str(ROOT / "tests"), "LIGHTNING_STYLE_TEST_RESULTS": str(folder / "results"), **(env or {})}
    args = [*DEBUG, *strategy, *args, "--output.dir", str(folder / "out")]
    if devices == 1:
        with pytest.MonkeyPatch.context() as patch:
            patch.chdir(ROOT)
            patch.setenv("LIGHTNING_STYLE_TEST_RESULTS", env["LIGHTNING_STYLE_TEST_RESULTS"])
            assert run_main(*args)[0] == 0
    else:
        result = run_cli(*args, env=env)
        assert result.returncode == 0, result.stderr
    return load_results(folder / "results")


def assert_same_pairs(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=1e-5, rtol=0, msg=name)


def test_adam_two_processes_equal_one_and_resume_on_one(tmp_path, seven_pairs):
    one = fit(tmp_path, "one", 1, *seven_pairs, "--data.steps", "4")
    assert len(one) == 7 and not torch.equal(one["p0__paint"], one["p1__paint"])  # none dropped, none done twice

    # Two processes stopped at step 6: each finished its first batch (two batches of 2 pairs, one per process) and
    # is half-way through its second; resumed on one process, those start again there. Every pair equals one's.
    two = fit(tmp_path, "two", 2, *seven_pairs, "--data.steps", "4", "--trainer.max_steps", "6")
    assert len(two) == 4
    assert_same_pairs(two, {name: one[name] for name in two})
    last = tmp_path / "two/out/checkpoints/last.ckpt"
    with pytest.warns(UserWarning, match="the number of processes or the steps changed since the checkpoint"):
        resumed = fit(tmp_path, "two", 1, *seven_pairs, "--data.steps", "4", "--ckpt_path", str(last))
    assert_same_pairs(resumed, one)
    assert sorted(path.name for path in (tmp_path / "two" / "out").iterdir()) == [
        "checkpoints", "logs", *(f"p{k}__paint.png" for k in range(7))]


def torchrun_two_nodes(tmp_path: Path, name: str, *args: str) -> dict[str, torch.Tensor]:
    """Run the console script as two "nodes" of one process each, each node started by its own ``torchrun``
    (static rendezvous on 127.0.0.1, as two machines of a cluster would run it); every finished pair's image."""
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    folder = tmp_path / name
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tests"), "LIGHTNING_STYLE_TEST_RESULTS": str(folder / "results"),
           "OMP_NUM_THREADS": "1"}  # torchrun sets it only for several processes per node
    script = Path(sys.executable).with_name("lightning-style")
    nodes = [subprocess.Popen(
        [str(Path(sys.executable).with_name("torchrun")), "--nnodes", "2", "--node_rank", str(rank),
         "--nproc_per_node", "1", "--master_addr", "127.0.0.1", "--master_port", str(port), str(script),
         *DEBUG, "--trainer.num_nodes", "2", "--trainer.devices", "1", "--trainer.strategy", "ddp", *args,
         "--output.dir", str(folder / "out")],
        cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for rank in (0, 1)]
    for node in nodes:
        output, _ = node.communicate(timeout=600)
        assert node.returncode == 0, output[-3000:]
    return load_results(folder / "results")


def test_lbfgs_two_torchrun_nodes_equal_one_process(tmp_path, real_weights):
    # L-BFGS's first step is tiny, so its curvature estimate magnifies last-bit differences (measured: 1e-3 after
    # 4 steps when one process runs 2 threads and each of two runs 1, or when a batch of 2 becomes two of 1). With
    # the same batches (three shapes: a batch each) and the same thread count (one per process), running on two
    # nodes must change nothing.
    for seed, size in [(1, (48, 40)), (2, (40, 56)), (3, (56, 32))]:
        write_image(tmp_path / "contents" / f"photo{seed}.png", size=size, seed=seed)
    lbfgs = ["--data.content", str(tmp_path / "contents"), "--config", "configs/lbfgs.yaml", "--data.steps", "4",
             *real_weights]
    two = torchrun_two_nodes(tmp_path, "two", *lbfgs)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = fit(tmp_path, "one", 1, *lbfgs)
    finally:
        torch.set_num_threads(threads)
    assert one.keys() == two.keys() and len(one) == 3
    for name in one:
        assert torch.equal(two[name], one[name]), name


def test_a_shard_on_more_processes_than_its_pairs(tmp_path, real_weights):
    # Three photos; shard 1 of 2 holds photo0's pair only (shard_of), on two processes: one idles. The shard's pair
    # equals the whole job's on one process.
    for seed in range(3):
        write_image(tmp_path / "photos" / f"photo{seed}.png", seed=seed)
    assert [shard_of(f"photo{seed}__swirls", 2) for seed in range(3)] == [1, 0, 0]
    photos = ["--data.content", str(tmp_path / "photos"), "--data.steps", "3", *real_weights]
    shard = fit(tmp_path, "two", 2, *photos, "--data.shard", "1", "--data.shards", "2")
    one = fit(tmp_path, "one", 1, *photos)
    assert len(one) == 3 and list(shard) == ["photo0__swirls"]
    assert_same_pairs(shard, {"photo0__swirls": one["photo0__swirls"]})
