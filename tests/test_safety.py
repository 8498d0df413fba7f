"""Hostile and unlucky input: checkpoints that run code, planted links, results lost to a failed run, a machine's
memory taken, and the one-line refusals that must come before anything is written."""

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from pytorch_lightning.callbacks import Callback, ModelCheckpoint

from lightning_style import StyleTransfer, StyleTransferError, WriteError
from lightning_style.checkpoints import SafeCheckpointIO, read_checkpoint
from lightning_style.files import check_outputs, replace_atomically

from helpers import ROOT, collected, fit, run_cli, run_main, write_image

DEBUG = ["fit", "--config", "configs/default.yaml", "--config", "configs/debug.yaml"]
OUTPUT = "chelsea__swirls.png"


@pytest.fixture
def cli(tmp_path, monkeypatch, capsys):
    """Run the command line in-process from the repository, with every file under ``tmp_path``."""
    monkeypatch.chdir(ROOT)
    redirect = ["--output.dir", str(tmp_path / "out"),
                "--trainer.default_root_dir", str(tmp_path / "root")]

    def run(*args: str) -> tuple[int | str, str]:
        return run_main(*DEBUG, *redirect, *args, capsys=capsys)

    return run


def assert_refused(result, message: str) -> None:
    code, _ = result
    assert isinstance(code, str) and code.startswith(f"lightning-style: error: {message}"), code
    assert "\n" not in code


class RunsCode:
    """Unpickling this runs ``touch <path>``: what a crafted checkpoint does."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return os.system, (f"touch {self.path}",)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol 4")  # torch's remark on pickle.dump's crafted file
def test_checkpoints_are_never_unpickled_beyond_tensors(tmp_path, cli):
    crafted, witness = tmp_path / "crafted.ckpt", tmp_path / "code-ran"
    with open(crafted, "wb") as file:
        pickle.dump({"state_dict": {}, "x": RunsCode(witness)}, file)
    assert_refused(cli("--ckpt_path", str(crafted)), f"--ckpt_path {crafted}: not a readable checkpoint")
    assert_refused(cli("--ckpt_path", "http://127.0.0.1:9/x.ckpt"),
                   "--ckpt_path http://127.0.0.1:9/x.ckpt: remote checkpoints are not loaded")
    with pytest.raises(StyleTransferError, match="remote checkpoints are not loaded"):
        StyleTransfer.load_from_checkpoint("https://example.com/x.ckpt")
    with pytest.raises(Exception, match="Weights only load failed"):
        StyleTransfer.load_from_checkpoint(crafted)
    with pytest.raises(StyleTransferError, match="not a readable checkpoint"):
        SafeCheckpointIO().load_checkpoint(crafted)  # what the Python API's trainer.fit(ckpt_path=...) uses
    assert not witness.exists()
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("case", ["missing", "folder", "empty", "truncated", "random"])
def test_bad_checkpoints_give_one_line_and_leave_the_result(tmp_path, cli, case):
    assert cli()[0] == 0
    result, last = tmp_path / "out" / OUTPUT, tmp_path / "out/checkpoints/last.ckpt"
    before = result.read_bytes()
    path = tmp_path / "bad.ckpt"
    if case == "folder":
        path = tmp_path / "out"
    elif case == "empty":
        path.touch()
    elif case == "truncated":
        path.write_bytes(last.read_bytes()[:5000])
    elif case == "random":
        path.write_bytes(np.random.default_rng(0).bytes(4096))
    expected = {"missing": "no such file", "folder": "it is a folder"}.get(case, "not a readable checkpoint")
    assert_refused(cli("--ckpt_path", str(path)), f"--ckpt_path {path}: {expected}")
    assert result.read_bytes() == before
    assert sorted(p.name for p in (tmp_path / "out/logs").iterdir()) == ["version_0"]  # no new log folder


def test_replacing_a_file_never_follows_a_planted_link_and_survives_a_failed_write(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "result.png").symlink_to(victim)
    replace_atomically(shared / "result.png", lambda file: file.write(b"new"))
    assert victim.read_text() == "precious" and not (shared / "result.png").is_symlink()
    assert (shared / "result.png").read_bytes() == b"new"

    def disk_full(file):
        file.write(b"half of it")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        replace_atomically(shared / "result.png", disk_full)
    assert (shared / "result.png").read_bytes() == b"new"
    assert sorted(path.name for path in shared.iterdir()) == ["result.png"]  # no temporary file left


def test_checkpoints_are_written_in_their_own_folder(tmp_path, images):
    # The trainer's checkpoint writer is SafeCheckpointIO (replace_atomically, tested above), not Lightning's,
    # which stages the file in the system's temporary folder.
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True, save_top_k=0, every_n_train_steps=1)
    _, trainer = fit(tmp_path, images["content"], images["style"], steps=2, callbacks=[checkpoint])
    assert isinstance(trainer.strategy.checkpoint_io, SafeCheckpointIO)
    assert read_checkpoint(tmp_path / "ckpt" / "last.ckpt")["global_step"] == 2
    assert sorted(path.name for path in (tmp_path / "ckpt").iterdir()) == ["last.ckpt"]


class OutputBecomesAFolder(Callback):
    """Puts a folder where the result goes, after the start-up checks: the final write must fail."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def on_train_batch_end(self, *args) -> None:
        self.path.mkdir(parents=True, exist_ok=True)


def test_a_failed_write_stops_the_run_and_the_same_run_redoes_what_was_not_written(tmp_path, images):
    from lightning_style.checkpoints import StepCheckpoint

    pairs = ([images["content"], images["content2"]], images["style"])
    last, blocker = tmp_path / "ckpt" / "last.ckpt", tmp_path / "images" / "photo__paint.png"
    with pytest.raises(WriteError, match=rf"could not write {blocker} \(Is a directory\); free the space .*: the pairs "
                                         "not written are redone"):
        fit(tmp_path, *pairs, steps=3, batch_size=1,
            callbacks=[StepCheckpoint(dirpath=tmp_path / "ckpt"), OutputBecomesAFolder(blocker)])
    assert read_checkpoint(last)["global_step"] == 3  # stopped when the first batch finished, with a checkpoint
    blocker.rmdir()  # space is free again: the same run does what is not done
    _, trainer = fit(tmp_path, *pairs, steps=3, batch_size=1, ckpt_path=str(last),
                     callbacks=[StepCheckpoint(dirpath=tmp_path / "ckpt")])
    assert sorted(collected(trainer)) == ["photo2__paint", "photo__paint"]
    assert sorted(path.name for path in (tmp_path / "images").iterdir()) == ["photo2__paint.png", "photo__paint.png"]


def test_outputs_that_cannot_be_replaced_are_refused_at_start_up(tmp_path, cli):
    out = tmp_path / "out"
    write_image(out / OUTPUT)
    os.chmod(out / OUTPUT, 0o444)
    before = (out / OUTPUT).read_bytes()
    assert_refused(cli(), f"--output.dir {out} holds {OUTPUT}, which is read-only; "
                          "make it writable or choose another folder")
    assert (out / OUTPUT).read_bytes() == before and oct((out / OUTPUT).stat().st_mode)[-3:] == "444"
    assert sorted(p.name for p in out.iterdir()) == [OUTPUT]  # no logs or checkpoints started
    with pytest.raises(StyleTransferError, match=r"cannot hold the output name 'xxx.*\.png': "
                                                r"longer than the filesystem allows \(255 bytes\)"):
        check_outputs(tmp_path, ["x" * 252 + ".png"])


@pytest.mark.parametrize("args, message", [
    (["--data.image_size", "100000"],
     r"this run needs about [\d,]+ GB in memory \(1 image\(s\) of up to 100000x66519 px "
     r"at 2.30 GB per megapixel\) but [\d.]+ GB are free; "
     r"use a smaller --data.image_size, --model.checkpointing true"),
    (["--data.style_scale", "1000"],
     r"this run needs about [\d,]+ GB in memory \(a style image of 64000x\d+ px\) but [\d.]+ GB "
     r"are free; use a smaller --data.style_scale"),
])
def test_runs_that_cannot_fit_in_memory_are_refused_before_decoding(tmp_path, cli, args, message):
    import re

    code, _ = cli(*args)
    assert re.match(f"lightning-style: error: {message}", code) and "\n" not in code, code
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("case", ["log-folder", "root-folder", "not-utf8", "16-true", "no-steps"])
def test_settings_refused_in_one_line_with_nothing_written(tmp_path, cli, case):
    args, message = {
        "log-folder": (["--trainer.logger", "CSVLogger", "--trainer.logger.init_args.save_dir", "pyproject.toml/logs"],
                       "--trainer.logger.init_args.save_dir pyproject.toml/logs cannot write there"),
        "root-folder": (["--trainer.default_root_dir", "README.md/x"],
                        "--trainer.default_root_dir README.md/x cannot write there"),
        "not-utf8": (["--config", str(tmp_path / "latin1.yaml")],
                     f"--config {tmp_path / 'latin1.yaml'}: not UTF-8 text"),
        "16-true": (["--trainer.precision", "16-true"],
                    "--trainer.precision 16-true would store the images in low precision"),
        "no-steps": (["--trainer.max_steps", "0"], "--trainer.max_steps 0: no step would be taken"),
    }[case]
    latin1 = "model:\n  style_weight: 50  # beta, \xe9crit en latin-1\n".encode("latin-1")
    (tmp_path / "latin1.yaml").write_bytes(latin1)
    assert_refused(cli(*args), message)
    assert not (tmp_path / "out").exists() and not (tmp_path / "root").exists()


def test_resuming_with_other_model_options_starts_the_batch_again_and_says_why(tmp_path, cli):
    assert cli("--trainer.max_steps", "2")[0] == 0
    with pytest.warns(UserWarning) as warned:
        code, _ = cli("--ckpt_path", "last", "--model.style_weight", "50")
    assert code == 0
    (line,) = [str(w.message) for w in warned if "--ckpt_path" in str(w.message)]
    assert line == (f"--ckpt_path {tmp_path / 'out/checkpoints/last.ckpt'}: 1 batch(es) in progress start again "
                    "(chelsea__swirls: style_weight 100.0 -> 50.0)")
    assert read_checkpoint(tmp_path / "out/checkpoints/last.ckpt")["global_step"] == 2 + 5  # the batch's 5 steps


@pytest.mark.slow
@pytest.mark.parametrize("rank", [0, 1])
def test_when_a_process_fails_the_other_stops_at_once(tmp_path, rank):
    # A callback that fails on one rank only, at step 2. The other process stops at once, with one line naming the
    # failed one, instead of waiting for it at its next collective call (gloo: 30 minutes; the subprocess timeout
    # below catches a hang), and adds no traceback of its own.
    result = run_cli(*DEBUG, "--trainer.devices", "2", "--trainer.strategy", "ddp", "--data.steps", "1000",
                     "--trainer.callbacks+=failing_callback.FailOnRank", "--trainer.callbacks.rank", str(rank),
                     "--output.dir", str(tmp_path / "out"), env={"PYTHONPATH": str(ROOT / "tests")}, timeout=240)
    assert result.returncode != 0
    assert f"rank {rank} fails here" in result.stderr, result.stderr[-3000:]
    if rank == 1:
        assert "lightning-style: error: process 1 of 2 (node 0, pid " in result.stderr
        assert ") failed: RuntimeError: rank 1 fails here: process 0 stops too" in result.stderr
    assert f"[rank{1 - rank}]" not in result.stderr, result.stderr[-3000:]
