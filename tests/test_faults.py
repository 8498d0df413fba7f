"""Mixed precision, non-finite values, SIGKILL and atomic outputs."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image
from pytorch_lightning.callbacks import ModelCheckpoint

from lightning_style import NonFiniteError
from lightning_style.record import Record

from helpers import ROOT, fit, run_main, write_image

EXAMPLES = (ROOT / "examples/content/chelsea.png", ROOT / "examples/style/swirls.png")


@pytest.mark.filterwarnings("ignore:.*AMP with fp16 is not supported on CPU")  # Lightning's words for the next line
def test_mixed_precision_is_finite_and_close_to_full_precision(tmp_path, hed_weights):
    results = {}
    for precision in ["32-true", "bf16-mixed", "16-mixed"]:  # on a CPU Lightning runs 16-mixed as bf16-mixed
        model, trainer = fit(tmp_path / precision, *EXAMPLES, steps=6, image_size=48, weights=str(hed_weights),
                             trainer_kwargs={"precision": precision})
        metrics = trainer.callback_metrics
        assert all(torch.isfinite(value) for value in metrics.values())
        results[precision] = (model.images.detach(), metrics["train/loss"].item())
    image, loss = results["32-true"]
    for precision in ["bf16-mixed", "16-mixed"]:
        low_image, low_loss = results[precision]
        assert abs(low_loss - loss) < 0.02 * loss  # measured: 0.2% at 64 px after 10 steps
        assert (low_image - image).abs().mean() < 0.03  # measured: 0.013


def test_gradient_clipping_is_refused(tmp_path, images):
    from lightning_style import StyleTransferError

    with pytest.raises(StyleTransferError,
                       match=r"^Trainer\(gradient_clip_val=0.5\) would tie a batch's pairs together"):
        fit(tmp_path, images["content"], images["style"], trainer_kwargs={"gradient_clip_val": 0.5})


def test_fewer_processes_than_torchrun_started_are_refused_in_one_line(tmp_path, images, monkeypatch, capsys):
    """Under ``torchrun --nnodes 2 --nproc_per_node 1`` (its variables, as it sets them) without
    ``--trainer.num_nodes 2``, Lightning runs each process alone as rank 0: every pair would be done twice."""
    from lightning_style import StyleTransferError

    from helpers import ROOT, run_main

    for name, value in {"TORCHELASTIC_RUN_ID": "none", "WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0",
                        "GROUP_RANK": "0", "LOCAL_WORLD_SIZE": "1"}.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(StyleTransferError, match=r"^Trainer\(num_nodes=1\) x devices 1 makes 1 process\(es\), but "
                                                 r"torchrun started 2: set num_nodes to torchrun's --nnodes"):
        fit(tmp_path, images["content"], images["style"])
    monkeypatch.chdir(ROOT)
    code, _ = run_main("fit", "--config", "configs/debug.yaml", "--output.dir", str(tmp_path / "out"))
    assert code == ("lightning-style: error: --trainer.num_nodes 1 x devices 1 makes 1 process(es), but torchrun "
                    "started 2: set num_nodes to torchrun's --nnodes and devices to its --nproc_per_node")
    assert not (tmp_path / "out").exists()


def test_half_precision_images_are_refused(tmp_path, images):
    from lightning_style import StyleTransferError

    with pytest.raises(StyleTransferError,
                       match=r"Trainer\(precision='bf16-true'\) would store the images in low precision"):
        fit(tmp_path, images["content"], images["style"], trainer_kwargs={"precision": "bf16-true"})


def test_non_finite_loss_stops_with_the_last_good_image_and_checkpoint(tmp_path, images):
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True, every_n_train_steps=1)
    fit(tmp_path, images["content"], images["style"], steps=4, max_steps=2, callbacks=[checkpoint])
    last, partial = tmp_path / "ckpt" / "last.ckpt", tmp_path / "images" / "partial" / "photo__paint.png"
    saved, first = last.read_bytes(), partial.read_bytes()  # the stopped run's images, marked as unfinished
    # A weight too large for float32 overflows the loss to inf at the first step. Another weight changes the result,
    # so the batch in progress starts again; its first step is found bad at step 3's checkpoint, before anything is
    # saved: the images go back to the batch's starting ones, which are no result, so nothing is written.
    with (
        pytest.warns(UserWarning, match=r"start again \(photo__paint: style_weight 100.0 -> 1e\+39\)"),
        pytest.raises(NonFiniteError, match=r"train/\w+ became NaN or infinite between global steps 2 and 3; "
                                            r"stopped with the images of step 2"),
    ):
        fit(tmp_path, images["content"], images["style"], steps=4, ckpt_path=str(last), style_weight=1e39,
            callbacks=[ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True, every_n_train_steps=1)])
    assert last.read_bytes() == saved and partial.read_bytes() == first
    assert not (tmp_path / "images" / "photo__paint.png").exists()


def test_non_finite_loss_on_the_command_line(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    code, _ = run_main("fit", "--config", "configs/debug.yaml", "--model.style_weight", "1e39",
                       "--output.dir", str(tmp_path / "out"))
    assert code == ("lightning-style: error: train/loss became NaN or infinite between global steps 0 and 5; stopped "
                    "with the images of step 0, the last check (lower the loss weights or the learning rate)")
    assert not (tmp_path / "out" / "chelsea__swirls.png").exists()  # no good step taken: nothing of this run to write


def test_a_failed_write_leaves_the_existing_output_intact(tmp_path):
    target = write_image(tmp_path / "result.png", seed=1)
    before = target.read_bytes()
    with pytest.raises(OSError):
        Record(tmp_path).write("result", Image.new("CMYK", (8, 8)), {})  # PNG cannot hold CMYK: the encoder fails
    assert target.read_bytes() == before
    assert sorted(path.name for path in tmp_path.iterdir()) == ["result.png"]


@pytest.mark.slow
@pytest.mark.parametrize("signum, devices", [(signal.SIGINT, 1), (signal.SIGTERM, 2)],
                         ids=["ctrl-c", "sigterm-to-the-first-of-2"])
def test_a_signal_stops_after_the_step_with_a_checkpoint_a_summary_and_partial_images(tmp_path, signum, devices):
    """The signal goes to the first process only (``kill PID``, ``timeout``, ``docker stop``): every process stops
    at the same step, the checkpoint holds the batches in progress, their images go to partial/ and nothing
    unfinished carries a final name; the exit status is 128 + the signal, and the summary says how to go on. Started
    as ``python -m lightning_style`` (the module's entry point; the second process too)."""
    last, out = tmp_path / "out/checkpoints/last.ckpt", tmp_path / "out"
    log, printed = tmp_path / "stderr.txt", tmp_path / "stdout.txt"
    # Two contents of two shapes: two batches, one on each process when there are two.
    with open(log, "w") as stderr, open(printed, "w") as stdout:  # files, not pipes that nobody reads meanwhile
        process = subprocess.Popen(
            [sys.executable, "-m", "lightning_style", "fit", "--config", "configs/debug.yaml", "--data.content",
             "examples/content", "--data.steps", "100000", "--trainer.callbacks+=StepCheckpoint",
             "--trainer.callbacks.every_n_train_steps", "2",
             "--trainer.devices", str(devices), "--trainer.strategy", "ddp" if devices > 1 else "auto",
             "--output.dir", str(out)],
            cwd=ROOT, stdout=stdout, stderr=stderr, env={**os.environ, "PYTHONFAULTHANDLER": "1"},
            # A shell that runs the tests as a background job (`pytest &`) makes them ignore SIGINT, and the run
            # would inherit that: give it the default disposition, as a terminal's Ctrl-C finds it.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.time() + 180
        while time.time() < deadline and not last.exists():
            time.sleep(0.2)
        assert last.exists(), "no checkpoint after 180 s:\n" + log.read_text()[-3000:]
        process.send_signal(signum)
        try:
            process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGABRT)  # PYTHONFAULTHANDLER: every thread's traceback goes to the log
            process.wait(timeout=30)
            pytest.fail("still running 120 s after the signal:\n" + log.read_text()[-6000:])
    finally:
        process.kill()
    assert process.returncode == 128 + signum, log.read_text()[-3000:]
    summary = printed.read_text()
    name = signal.Signals(signum).name
    assert f"lightning-style: stopped by {name}; this run: 0 pairs in" in summary and "the job: 0 of 2 done" in summary
    assert summary.rstrip().endswith("--ckpt_path last") and "to go on: lightning-style fit" in summary
    assert not list(out.glob("*.png"))  # nothing unfinished under a final name
    saved = torch.load(last, weights_only=True)
    in_progress = [entry["names"] for entry in saved["in_progress"] if entry["names"]]
    assert len(in_progress) == devices and saved["global_step"] > 0
    partial = sorted(path.stem for path in (out / "partial").glob("*.png"))
    assert partial == sorted(name for names in in_progress for name in names)


def test_processes_that_do_not_all_join_stop_in_one_line_within_the_bound(tmp_path, monkeypatch):
    # Two nodes asked for, one started: without a bound, a silent wait of 30 minutes. Node 0 names who is missing;
    # node 1 alone says it cannot reach node 0.
    from lightning_utilities.core.rank_zero import rank_zero_only as utilities_rank_zero_only
    from pytorch_lightning.utilities.rank_zero import rank_zero_only

    for name in ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)  # restored afterwards: this process would keep the run's
    for global_rank in (rank_zero_only, utilities_rank_zero_only):  # restored afterwards, whatever a run did
        monkeypatch.setattr(global_rank, "rank", 0)
    monkeypatch.chdir(ROOT)
    command = ["fit", "--config", "configs/debug.yaml", "--trainer.num_nodes", "2", "--trainer.strategy",
               "lightning_style.IndependentDDPStrategy", "--trainer.strategy.join_timeout", "2",
               "--output.dir", str(tmp_path / "out")]
    code, _ = run_main(*command)
    assert code.startswith("lightning-style: error: the run's 2 processes did not all join at 127.0.0.1:"), code
    assert "within 2 s: process 1 of node 1 did not come (process 0 is here); start every node's command" in code
    assert "\n" not in code
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    monkeypatch.setenv("NODE_RANK", "1")
    monkeypatch.setenv("MASTER_PORT", str(port))
    code, _ = run_main(*command)
    assert code == (f"lightning-style: error: process 1 of 2 (node 1) could not reach process 0 at 127.0.0.1:{port} "
                    "within 2 s: start node 0's command, and give every node its address and port (MASTER_ADDR, "
                    "MASTER_PORT)")
    assert rank_zero_only.rank == utilities_rank_zero_only.rank == 0  # no run left this process as rank 1


@pytest.mark.slow
@pytest.mark.parametrize("stopped", [1, 0], ids=["the-second", "the-first-holding-the-store"])
def test_a_process_that_stops_answering_stops_the_others_in_one_line(tmp_path, stopped):
    """SIGSTOP to one of two processes (a hung process, a machine gone): the other stops within the silence bound
    (2 s here, 60 by default) instead of Lightning's 30 minutes, with one line naming it; also when the stopped one
    holds the rendezvous store, whose requests then wait forever."""
    last, out = tmp_path / "out/checkpoints/last.ckpt", tmp_path / "out"
    script = Path(sys.executable).with_name("lightning-style")
    log = tmp_path / "stderr.txt"
    with open(log, "w") as stderr:
        process = subprocess.Popen(
            [str(script), "fit", "--config", "configs/debug.yaml", "--data.content", "examples/content",
             "--data.steps", "100000", "--trainer.callbacks+=StepCheckpoint",
             "--trainer.callbacks.every_n_train_steps", "2", "--trainer.devices", "2",
             "--trainer.strategy", "lightning_style.IndependentDDPStrategy",
             "--trainer.strategy.silence_timeout", "2", "--output.dir", str(out)],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=stderr)
    second = None
    try:
        deadline = time.time() + 180
        while time.time() < deadline and not last.exists():
            time.sleep(0.2)
        assert last.exists(), "no checkpoint after 180 s:\n" + log.read_text()[-3000:]
        second = next(int(pid) for pid in os.listdir("/proc") if pid.isdigit() and _parent(pid) == process.pid)
        os.kill([process.pid, second][stopped], signal.SIGSTOP)
        other = [process.pid, second][1 - stopped]
        deadline = time.time() + 120  # a hang, not a timing: the bound under test is 2 s
        while time.time() < deadline and _running(other):
            time.sleep(0.2)
        assert not _running(other), "still running 120 s after the other stopped:\n" + log.read_text()[-3000:]
    finally:
        for pid in (second, process.pid):
            if pid is not None:
                os.kill(pid, signal.SIGKILL)
        process.wait()
    lines = [line for line in log.read_text().splitlines() if line.startswith("lightning-style: error:")]
    assert len(lines) == 1, log.read_text()[-3000:]
    if stopped == 1:
        assert process.returncode == 1
        assert lines[0].startswith(f"lightning-style: error: process 1 of 2 (node 0, pid {second} on ")
        assert "has not answered for 2 s (stopped, hung, or its machine gone): process 0 stops too" in lines[0]
    else:
        assert lines[0].startswith("lightning-style: error: the run's rendezvous store (at 127.0.0.1:")
        assert "held by process 0 or the launcher) has not answered for 2 s: process 1 stops too" in lines[0]


def _running(pid: int) -> bool:
    """Whether ``pid`` runs (a process that ended but that its stopped parent has not reaped counts as ended)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _parent(pid: str) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return int(stat.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None
