"""The output folder is the job's record: what a rerun does, what a checkpoint makes a run do (what it may not:
test_checkpoint_safety.py), and the faults that used to lose results. Real files, real checkpoints, the command
line run in this process."""

import ast
import os
import re

import pytest
import torch
from PIL import Image

from lightning_style.checkpoints import read_checkpoint
from lightning_style.record import Record

from helpers import DEBUG, ROOT, last, run_main, stamps, write_image


def test_a_rerun_keeps_what_is_done_and_does_only_what_changed(job):
    code, out = job()
    assert code == 0 and "this run: 3 pairs in" in out and "the job: 3 of 3 done;" in out
    provenance = Record(job.out).read("p0__swirls")
    assert provenance["complete"] and provenance["steps"] == 5 and provenance["settings"]["style_weight"] == 100.0
    before = stamps(job.out)

    code, out = job()  # the same command: nothing to do, nothing touched
    assert code == 0 and "this run: 0 pairs" in out and "the job: 3 of 3 done;" in out and stamps(job.out) == before

    write_image(job.photos / "p3.png", size=(64, 48), seed=3)  # added: only it is done
    (job.photos / "p0.png").unlink()  # removed: nothing redone
    write_image(job.photos / "p1.png", size=(48, 64), seed=11)  # replaced by another picture: redone
    (job.out / "p2__swirls.png").unlink()  # a result deleted: redone
    code, out = job()
    assert code == 0 and "this run: 3 pairs in" in out and "the job: 3 of 3 done;" in out, out
    assert "redoing 1 result(s) in" in out and "(1: its content file changed)" in out
    after = stamps(job.out)
    assert after["p0__swirls.png"] == before["p0__swirls.png"]  # a result of a removed photo stays
    assert after["p1__swirls.png"] != before["p1__swirls.png"] and "p3__swirls.png" in after
    with Image.open(job.out / "p1__swirls.png") as image:
        assert image.size == (24, 32)  # 48x64 at 32 px

    code, out = job("--model.style_weight", "50")  # a setting that changes results: every pair redone, and why
    assert code == 0 and "redoing 3 result(s)" in out and "(3: style_weight 100.0 -> 50.0)" in out
    code, out = job("--model.style_weight", "50", "--output.overwrite", "true")
    assert code == 0 and "this run: 3 pairs in" in out
    code, out = job("--model.style_weight", "50", "--model.checkpointing", "true")  # speed options change nothing
    assert code == 0 and "this run: 0 pairs" in out


def test_a_stopped_run_goes_on_with_the_same_command(job):
    code, out = job("--trainer.max_steps", "7")  # p0 finished at step 5, p1 stopped after 2 of its steps
    assert code == 0 and "the job: 1 of 3 done;" in out and out.rstrip().endswith("--ckpt_path last")
    assert sorted(p.name for p in job.out.glob("*.png")) == ["p0__swirls.png"]  # nothing unfinished under a final name
    partial = Record(job.out).partial_path("p1__swirls")
    with Image.open(partial) as image:
        assert "complete\": false" in image.info["lightning-style"]
    saved = read_checkpoint(last(job))
    assert saved["global_step"] == 7 and saved["in_progress"][0]["names"] == ["p1__swirls"]
    done = stamps(job.out)

    # Resumed runs that take no step, then one step: the finished result is never touched, the batch in progress
    # stays in the checkpoint and goes on.
    assert job("--ckpt_path", "last", "--trainer.max_steps", "7")[0] == 0
    assert torch.equal(read_checkpoint(last(job))["in_progress"][0]["images"], saved["in_progress"][0]["images"])
    assert job("--ckpt_path", "last", "--trainer.max_steps", "8")[0] == 0
    assert read_checkpoint(last(job))["in_progress"][0]["step"] == 3 and stamps(job.out) == done

    code, out = job("--ckpt_path", "last")
    assert code == 0 and "this run: 2 pairs" in out and "the job: 3 of 3 done;" in out and "to go on" not in out
    assert stamps(job.out)["p0__swirls.png"] == done["p0__swirls.png"] and not partial.exists()
    assert read_checkpoint(last(job))["global_step"] == 7 + 3 + 5


def test_a_photo_replaced_while_its_batch_was_in_progress_starts_again(job):
    assert job("--trainer.max_steps", "2")[0] == 0  # p0 in progress
    write_image(job.photos / "p0.png", size=(48, 64), seed=12)  # another picture, another shape, the same name
    with pytest.warns(UserWarning,
                      match=r"1 batch\(es\) in progress start again \(p0__swirls: its content file changed\)"):
        code, out = job("--ckpt_path", "last")
    assert code == 0 and "the job: 3 of 3 done" in out
    with Image.open(job.out / "p0__swirls.png") as image:
        assert image.size == (24, 32) and '"steps": 5' in image.info["lightning-style"]


def test_partial_images_that_cannot_be_written_are_a_warning(job):
    job.out.mkdir()
    (job.out / "partial").write_text("a file where the partial images go")
    with pytest.warns(UserWarning, match=r"could not write the partial images"):
        code, out = job("--trainer.max_steps", "7")
    assert code == 0 and "the job: 1 of 3 done" in out
    assert read_checkpoint(last(job))["global_step"] == 7  # the stop's checkpoint is there all the same


def test_a_stopped_overwrite_goes_on_without_redoing(job):
    assert job()[0] == 0
    code, out = job("--output.overwrite", "true", "--trainer.max_steps", "7")
    assert code == 0 and "the job: 3 of 3 done" in out  # the older results count until they are replaced
    code, out = job("--model.style_weight", "50", "--output.overwrite", "true", "--trainer.max_steps", "7")
    (command,) = [line for line in out.splitlines() if line.startswith("to go on:")]
    assert command.endswith("--model.style_weight 50 --output.overwrite false --ckpt_path last"), command


def test_checkpoints_at_every_batch_end_and_once_at_the_end(job, monkeypatch):
    from lightning_style.checkpoints import SafeCheckpointIO

    saves = []
    save = SafeCheckpointIO.save_checkpoint

    def counted(self, checkpoint, path, **kwargs):
        saves.append(checkpoint["global_step"])
        save(self, checkpoint, path, **kwargs)

    monkeypatch.setattr(SafeCheckpointIO, "save_checkpoint", counted)
    assert job()[0] == 0
    assert saves == [5, 10, 15]  # each batch's end (the last is the end of the run): no step lost, nothing twice
    assert all(entry["names"] == [] for entry in read_checkpoint(last(job))["in_progress"])  # no batch in progress


def test_another_spelling_of_the_output_folder_finds_the_same_checkpoint(job, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    DEBUG[2] = str(ROOT / "configs/debug.yaml")
    code, _ = run_main(*DEBUG, "--data.content", str(job.photos), "--data.style",
                       str(ROOT / "examples/style/swirls.png"), "--output.dir", "out", "--trainer.max_steps", "2")
    assert code == 0
    code, _ = run_main(*DEBUG, "--data.content", str(job.photos), "--data.style",
                       str(ROOT / "examples/style/swirls.png"), "--output.dir", "./out", "--ckpt_path", "last")
    assert code == 0
    assert sorted(path.name for path in (tmp_path / "out" / "checkpoints").iterdir()) == ["last.ckpt"]  # no last-v1
    assert read_checkpoint(tmp_path / "out" / "checkpoints" / "last.ckpt")["global_step"] == 2 + 3  # one batch of 3


def test_another_optimiser_restarts_the_batch_in_progress_with_one_line(job):
    assert job("--trainer.max_steps", "2")[0] == 0
    with pytest.warns(UserWarning) as warned:
        code, out = job("--config", "configs/lbfgs.yaml", "--data.steps", "5", "--ckpt_path", "last")
    assert code == 0 and "the job: 3 of 3 done" in out
    (line,) = [str(w.message) for w in warned if "--ckpt_path" in str(w.message)]
    assert line.endswith('1 batch(es) in progress start again (p0__swirls: optimizer.class "torch.optim.adam.Adam" -> '
                         '"torch.optim.lbfgs.LBFGS")')


# --- faults in the middle of a run ---------------------------------------------------------------------------
def test_a_content_replaced_by_another_shape_mid_run_is_skipped(tmp_path):
    from lightning_style import PairDataModule

    for k in range(2):
        write_image(tmp_path / "photos" / f"p{k}.png", size=(64, 48), seed=k)
    data = PairDataModule(str(tmp_path / "photos"), str(ROOT / "examples/style/swirls.png"), image_size=64)
    write_image(tmp_path / "photos" / "p1.png", size=(48, 64), seed=5)  # after the headers were read
    with pytest.warns(UserWarning, match=r"skipping pair p1__swirls: content .*p1.png: 48x64 px once resized, but "
                                         r"64x48 px when the run started \(the file was replaced\)"):
        batch = data.decode([0, 1])
    assert batch.names == ("p0__swirls",) and batch.skipped == ("p1__swirls",)
    assert batch.contents.shape == (1, 3, 48, 64)


def test_a_checkpoint_that_cannot_be_written_stops_the_run_in_one_line(job):
    last(job).mkdir(parents=True)  # a folder where the checkpoint goes: writing it fails as a full disk would
    (last(job) / "x").touch()
    code, _ = job()
    assert code.startswith(f"lightning-style: error: could not write the checkpoint {last(job)} ("), code
    assert "\n" not in code, code
    assert "run the same command with --ckpt_path last" in code


@pytest.mark.filterwarnings("error:There is a wandb run already in progress")  # each command ends its run
def test_wandb_offline_one_job_is_one_run(job, monkeypatch):
    import wandb

    monkeypatch.setenv("WANDB_MODE", "offline")
    options = ["--config", "configs/wandb.yaml", "--images.every_n_steps", "0"]
    try:
        assert job(*options, "--trainer.max_steps", "2")[0] == 0
        assert job(*options, "--ckpt_path", "last")[0] == 0
    finally:
        # W&B's service, started in this process, is named in its environment: the console scripts that later
        # tests start would log through it and return before it has written their runs.
        wandb.teardown()
    assert "WANDB_SERVICE" not in os.environ
    # offline-run-<time>-<id>: two folders, or one when both runs start within a second; one id, one W&B run
    ids = {run.name.rsplit("-", 1)[1] for run in (job.out / "wandb").glob("offline-run-*")}
    assert ids == {(job.out / "wandb" / "run-id").read_text()}


def _literal_runs(text: str) -> list[str]:
    """The runs of literal words in a message: what is left between the values it names (file names, paths,
    numbers, flags and the value after a leading one, quoted names, elisions, capitalised format names, the system's
    own words in parentheses, f-string fields)."""
    values = (r"^--[\w.]+ \S+|\x00|\([A-Z][^)]*\)|\S+\.[a-z]{2,5}\b|--[\w.]+|\S*\d\S*|\S*/\S*|\S*_\S*|"
              r"(?<![A-Za-z])'[^']*'|\.\.\.|\b[A-Z]{2,}\b|[()`]")
    runs = [" ".join(piece.split()).strip(" :;,") for piece in re.split(values, text)]
    return [run for run in runs if len(run.split()) >= 3]


def _source_strings() -> list[str]:
    """Every string in the package, f-string fields as NUL."""
    strings = []
    for path in (ROOT / "lightning_style").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.JoinedStr):
                strings.append("".join(part.value if isinstance(part, ast.Constant) else "\x00"
                                       for part in node.values))
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                strings.append(node.value)
    return strings


def test_every_message_the_readme_quotes_is_in_the_code():
    """Each message of the README's troubleshooting table: its runs of literal words (between the values it shows
    as examples) are runs of words of a string in the package."""
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("| message (`lightning-style: error: ...`)"):]
    table = table[: table.index("\n\n")]
    runs = [" ".join(run.split()) for string in _source_strings() for run in _literal_runs(string)]
    missing = [(message, run) for row in table.splitlines()[2:]
               for message in re.findall(r"`([^`]+)`", row.split(" | ")[0])
               for run in _literal_runs(message) if not any(run in source for source in runs)]
    assert not missing, missing
