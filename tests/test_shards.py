"""Shards, independent parts of one job (lightning_style.shards): which pairs each runs, where its index comes from,
and that together they are one run. Real files, the command line run in this process (a shard on two processes:
test_ddp.py)."""

import os

import numpy as np
import pytest
from PIL import Image

from lightning_style import PairDataModule
from lightning_style.callbacks import ImageWriter
from lightning_style.errors import StyleTransferError
from lightning_style.shards import Shard, find_shard, shard_of
from lightning_style.summary import launched_by, summary

from helpers import DEBUG, ROOT, run_main, write_image

SLURM = {"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "0",
         "SLURM_ARRAY_TASK_STEP": "1", "SLURM_ARRAY_TASK_MAX": "3"}


@pytest.mark.parametrize(("shard", "shards", "environ", "found"), [
    (None, None, {}, Shard()),
    (2, 5, {}, Shard(2, 5, "--data.shard")),
    (None, None, SLURM, Shard(1, 4, "SLURM_ARRAY_TASK_ID")),
    (None, 16, {**SLURM, "SLURM_ARRAY_TASK_ID": "7", "SLURM_ARRAY_TASK_COUNT": "2", "SLURM_ARRAY_TASK_MIN": "3"},
     Shard(7, 16, "SLURM_ARRAY_TASK_ID")),  # a retry of shards 3 and 7 of 16: --array=3,7 --data.shards 16
    (None, 1, SLURM, Shard()),  # an array task that runs a whole job (of its own config)
    (3, 4, {"JOB_COMPLETION_INDEX": "0"}, Shard(3, 4, "--data.shard")),  # the option wins
    (None, 8, {"JOB_COMPLETION_INDEX": "5"}, Shard(5, 8, "JOB_COMPLETION_INDEX")),
])
def test_the_shard_comes_from_the_options_or_an_array_task(shard, shards, environ, found):
    assert find_shard(shard, shards, environ) == found


@pytest.mark.parametrize(("shard", "shards", "environ", "message"), [
    (2, 2, {}, "PairDataModule(shard=2) must be below shards (2)"),
    (1, None, {}, "PairDataModule(shard=1) needs shards"),
    (None, 4, {}, "PairDataModule(shards=4) needs shard (this run's index"),
    (None, 0, {}, "PairDataModule(shards=0) must be >= 1"),
    (None, None, {**SLURM, "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_ID": "4"},
     "SLURM array task 4: the array (4 tasks from 1 by 1) is not numbered 0 .. 3, so its task ids are not shard "
     "numbers: use `sbatch --array=0-3`"),
    (None, None, {"JOB_COMPLETION_INDEX": "3"}, "JOB_COMPLETION_INDEX 3: a Kubernetes Indexed Job does not say how "
                                                "many indexes it has: give --data.shards N"),
    (None, 2, {"JOB_COMPLETION_INDEX": "3"}, "JOB_COMPLETION_INDEX 3: not below --data.shards 2"),
    (None, None, {**SLURM, "SLURM_ARRAY_TASK_ID": "x"}, "SLURM_ARRAY_TASK_ID='x' is not a whole number"),
])
def test_a_shard_that_cannot_be_is_refused_in_one_line(shard, shards, environ, message):
    with pytest.raises(StyleTransferError) as error:
        find_shard(shard, shards, environ)
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


def test_adding_photos_moves_no_pair_to_another_shard(tmp_path):
    for k in range(12):
        write_image(tmp_path / "photos" / f"photo{k}.png", size=(16, 16), seed=k)
    write_image(tmp_path / "style.png", size=(16, 16))

    def shards() -> list[set[str]]:
        return [set(PairDataModule(str(tmp_path / "photos"), str(tmp_path / "style.png"), shard=k, shards=4).names)
                for k in range(4)]

    before = shards()
    assert all(before) and sum(map(len, before)) == len(set().union(*before)) == 12  # each pair in one shard
    for k in range(12, 20):
        write_image(tmp_path / "photos" / f"photo{k}.png", size=(16, 16), seed=k)
    after = shards()
    assert sum(map(len, after)) == len(set().union(*after)) == 20
    assert all(old <= new for old, new in zip(before, after, strict=True))  # every pair stayed where it was
    assert all(shard_of(name, 4) == k for k, names in enumerate(after) for name in names)


def _pixels(folder) -> dict[str, np.ndarray]:
    return {path.name: np.asarray(Image.open(path)) for path in sorted(folder.glob("*.png"))}


def test_two_shards_are_one_run_each_pair_once(tmp_path, monkeypatch, capfd):
    """Six photos cut in two shards (p0, p1, p4, p5 | p2, p3): the shards write exactly the pairs of one run, each
    once, pixel for pixel; shard 1 takes its index from a SLURM array task, stops, and goes on with the command it
    prints; each shard keeps its own checkpoint."""
    monkeypatch.chdir(ROOT)
    for k in range(6):
        write_image(tmp_path / "photos" / f"p{k}.png", size=(64, 48), seed=k)
    common = [*DEBUG, "--data.content", str(tmp_path / "photos"), "--data.batch_size", "1"]

    def run(out: str, *args: str) -> str:
        code, _ = run_main(*common, "--output.dir", str(tmp_path / out), *args)
        printed = capfd.readouterr()
        assert code == 0, (code, printed.out[-2000:], printed.err[-2000:])
        return printed.out

    run("one")
    assert "this run: 4 pairs in" in run("shards", "--data.shard", "0", "--data.shards", "2")
    for name, value in {**SLURM, "SLURM_ARRAY_TASK_COUNT": "2", "SLURM_ARRAY_TASK_MAX": "1"}.items():
        monkeypatch.setenv(name, value)
    out = run("shards", "--trainer.max_steps", "7")  # p2 done at step 5, p3 two steps in
    assert "shard 1 of 2 (from SLURM_ARRAY_TASK_ID): 2 of the job's 6 pairs" in out
    assert "this run: 1 pair in" in out and "shard 1 of 2: 1 of 2 done; the job: 5 of 6 pairs have results" in out
    go_on = out.rstrip().splitlines()[-1]
    assert go_on.endswith("--data.shard 1 --data.shards 2 --ckpt_path last"), go_on
    for name in SLURM:
        monkeypatch.delenv(name)
    resumed = run_main(*go_on.split()[4:])  # after "to go on: lightning-style": away from the array task
    out = capfd.readouterr().out
    assert resumed[0] == 0 and "this run: 1 pair in" in out and "the job: 6 of 6 pairs have results" in out, out

    one, shards = _pixels(tmp_path / "one"), _pixels(tmp_path / "shards")
    assert len(one) == 6 and one.keys() == shards.keys()
    for name in one:
        assert np.array_equal(one[name], shards[name]), name
    assert sorted(os.listdir(tmp_path / "shards" / "checkpoints")) == ["shard-0-of-2", "shard-1-of-2"]


def test_a_bad_shard_on_the_command_line_is_one_line_before_any_compute(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    code, _ = run_main(*DEBUG, "--data.shard", "2", "--data.shards", "2", "--output.dir", str(tmp_path / "out"))
    assert code == "lightning-style: error: --data.shard 2 must be below shards (2)"
    monkeypatch.setenv("JOB_COMPLETION_INDEX", "4")
    code, _ = run_main(*DEBUG, "--output.dir", str(tmp_path / "out"))
    assert code.startswith("lightning-style: error: JOB_COMPLETION_INDEX 4: a Kubernetes Indexed Job does not say")
    assert not (tmp_path / "out").exists()


@pytest.mark.filterwarnings("error:There is a wandb run already in progress")  # each command ends its run
def test_the_shards_of_a_job_are_one_wandb_group_with_the_jobs_progress(tmp_path, monkeypatch, capfd):
    import wandb

    from wandb_records import read_records

    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("WANDB_MODE", "offline")
    for k in range(6):
        write_image(tmp_path / "photos" / f"p{k}.png", size=(64, 48), seed=k)
    out = tmp_path / "out"
    try:
        for k in (0, 1):
            code, _ = run_main(*DEBUG, "--config", "configs/wandb.yaml", "--images.every_n_steps", "0",
                               "--data.content", str(tmp_path / "photos"), "--data.batch_size", "1",
                               "--data.shard", str(k), "--data.shards", "2", "--output.dir", str(out))
            assert code == 0, capfd.readouterr().err
    finally:
        wandb.teardown()  # the service this process started (see test_record.py)
    runs = {}
    for path in (out / "wandb").glob("offline-run-*/run-*.wandb"):
        records = read_records(path)
        run = next(record.run for record in records if record.HasField("run"))
        progress = {}  # each figure's last value
        for record in records:
            for item in record.history.item if record.HasField("history") else ():
                key = item.key or "/".join(item.nested_key)
                if key.startswith("progress/"):
                    progress[key] = float(item.value_json)
        runs[run.display_name] = (run.run_group, progress)
    assert sorted(runs) == ["shard-0-of-2", "shard-1-of-2"]
    (group,) = {group for group, _ in runs.values()}
    assert group.startswith("out-")
    assert runs["shard-0-of-2"][1] == {"progress/pairs_done": 4, "progress/pairs": 4, "progress/job_results": 4,
                                       "progress/job_pairs": 6}
    assert runs["shard-1-of-2"][1] == {"progress/pairs_done": 2, "progress/pairs": 2, "progress/job_results": 6,
                                       "progress/job_pairs": 6}
    assert sorted(path.name for path in (out / "wandb").glob("run-id*")) == ["run-id-shard-0-of-2",
                                                                            "run-id-shard-1-of-2"]


def test_the_plan_of_a_job_is_printed_without_running_it(tmp_path, monkeypatch, capfd):
    monkeypatch.chdir(ROOT)
    for k in range(6):
        write_image(tmp_path / "photos" / f"p{k}.png", size=(64, 48), seed=k)
    out = tmp_path / "out"
    common = [*DEBUG, "--data.content", str(tmp_path / "photos"), "--data.batch_size", "3", "--output.dir", str(out)]
    assert run_main(*common, "--data.shard", "0", "--data.shards", "2", "--trainer.max_steps", "5")[0] == 0
    capfd.readouterr()
    code, _ = run_main(*common, "--data.shard", "0", "--data.shards", "2", "--trainer.devices", "2", "--plan", "true")
    lines = capfd.readouterr().out.splitlines()
    assert code == 0
    plan = lines[lines.index(next(line for line in lines if line.startswith("lightning-style plan:"))):]
    assert plan[0] == (f"lightning-style plan: 4 pairs in shard 0 of 2 (from --data.shard): 2 done in {out}/, 2 to "
                       "do, 5 steps each, in batches of up to 3 pairs of one image shape")
    assert plan[1] == "  shards: 2 of 2 to 4 pairs (the job's 6, by name)"
    assert plan[2] == "  processes: 2 (nodes 1 x devices 2), each 1 batch(es), 5 steps"
    assert plan[3].startswith("  memory: about 0.") and "(its largest batch: 1 pair(s) of 64x48 px)" in plan[3]
    assert plan[4].startswith("  time: ") and " s a step for that batch (measured: 3 steps on cpu); this run" in plan[4]
    assert sorted(path.name for path in out.glob("*.png")) == ["p0__swirls.png", "p1__swirls.png"]  # nothing new
    assert not (out / "partial").exists()


def test_the_command_that_goes_on_is_started_as_the_run_was(tmp_path):
    assert launched_by({"TORCHELASTIC_RUN_ID": "none"}) == "torchrun"
    assert launched_by({"SLURM_NTASKS": "16", "SLURM_STEP_ID": "0"}) == "srun"
    assert launched_by({"SLURM_NTASKS": "1", "SLURM_STEP_ID": "0", "SLURM_ARRAY_TASK_ID": "3"}) == ""  # a lone task
    writer = ImageWriter(str(tmp_path))
    writer.expected = {"a__b": {"pair": "a__b"}}  # one pair, not done
    lines = summary(writer, None, 3.0, ["fit", "--trainer.num_nodes", "2"], None, launcher="torchrun")
    assert lines[-1] == "to go on (under torchrun, as this run was started): lightning-style fit --trainer.num_nodes 2"
