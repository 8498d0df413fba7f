"""Mixed precision, non-finite values, SIGKILL and atomic outputs."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pytorch_lightning.callbacks import ModelCheckpoint

from lightning_style import NonFiniteError
from lightning_style.callbacks import save_atomically, to_uint8

from conftest import ROOT, fit, run_main, write_image

EXAMPLES = (ROOT / "examples/content/chelsea.png", ROOT / "examples/style/swirls.png")


def test_mixed_precision_is_finite_and_close_to_full_precision(tmp_path, hed_weights):
    results = {}
    for precision in ["32-true", "bf16-mixed", "16-mixed"]:  # on a CPU Lightning runs 16-mixed as bf16-mixed
        model, trainer = fit(tmp_path, *EXAMPLES, steps=6, image_size=48, weights=str(hed_weights),
                             trainer_kwargs={"precision": precision})
        metrics = trainer.callback_metrics
        assert all(torch.isfinite(value) for value in metrics.values())
        results[precision] = (model.images.detach(), metrics["train/loss"].item())
    image, loss = results["32-true"]
    for precision in ["bf16-mixed", "16-mixed"]:
        low_image, low_loss = results[precision]
        assert abs(low_loss - loss) < 0.02 * loss  # measured: 0.2% at 64 px after 10 steps
        assert (low_image - image).abs().mean() < 0.03  # measured: 0.013


def test_half_precision_images_are_refused(tmp_path, images):
    from lightning_style import StyleTransferError

    with pytest.raises(StyleTransferError, match=r"Trainer\(precision='bf16-true'\) would store the images in low precision"):
        fit(tmp_path, images["content"], images["style"], trainer_kwargs={"precision": "bf16-true"})


def test_non_finite_loss_stops_with_the_last_good_image_and_checkpoint(tmp_path, images):
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True, every_n_train_steps=1)
    good, _ = fit(tmp_path, images["content"], images["style"], steps=4, max_steps=2, callbacks=[checkpoint])
    last = tmp_path / "ckpt" / "last.ckpt"
    saved = last.read_bytes()
    # A weight too large for float32 overflows the loss to inf at the first resumed step.
    # Found at step 3's checkpoint, before anything is saved: the images go back to step 2's (the resume's).
    with pytest.raises(NonFiniteError, match=r"train/\w+ became NaN or infinite between global steps 2 and 3; stopped with the images of step 2"):
        fit(tmp_path, images["content"], images["style"], steps=4, ckpt_path=str(last), style_weight=1e39,
            callbacks=[ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True, every_n_train_steps=1)])
    assert last.read_bytes() == saved
    with Image.open(tmp_path / "images" / "photo__paint.png") as written:
        assert np.array_equal(np.asarray(written), to_uint8(good.images[0]))


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
        save_atomically(Image.new("CMYK", (8, 8)), target)  # PNG cannot hold CMYK: the encoder fails
    assert target.read_bytes() == before
    assert sorted(path.name for path in tmp_path.iterdir()) == ["result.png"]


@pytest.mark.slow
def test_ctrl_c_writes_the_current_image(tmp_path):
    last = tmp_path / "out/checkpoints/last.ckpt"
    output = tmp_path / "out" / "chelsea__swirls.png"
    script = Path(sys.executable).with_name("lightning-style")
    log = tmp_path / "stderr.txt"
    with open(log, "w") as stderr:  # a file, not a pipe that nobody reads while the run goes on
        process = subprocess.Popen(
            [str(script), "fit", "--config", "configs/default.yaml", "--config", "configs/debug.yaml",
             "--model.steps", "100000", "--trainer.callbacks+=StepCheckpoint", "--trainer.callbacks.every_n_train_steps", "2",
             "--output.dir", str(tmp_path / "out")],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=stderr, env={**os.environ, "PYTHONFAULTHANDLER": "1"},
            # A shell that runs the tests as a background job (`pytest &`) makes them ignore SIGINT, and the run
            # would inherit that: give it the default disposition, as a terminal's Ctrl-C finds it.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not last.exists():
            time.sleep(0.2)
        assert last.exists(), "no checkpoint after 120 s:\n" + log.read_text()[-3000:]
        assert not output.exists()  # only the end of the pair's batch (or an interruption) writes it
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGABRT)  # PYTHONFAULTHANDLER: every thread's traceback goes to the log
            process.wait(timeout=30)
            pytest.fail("still running 120 s after Ctrl-C:\n" + log.read_text()[-6000:])
    finally:
        process.kill()
    assert output.is_file(), log.read_text()[-3000:]
    with Image.open(output) as image:
        assert image.size == (64, 43)
