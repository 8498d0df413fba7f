"""A checkpoint is data, never an instruction: crafted ``last.ckpt`` files that would run code, name the files
written, delete files, set the optimiser's arguments or allocate without bound, resumed from by the command line."""

from pathlib import Path

import pytest
import torch

from helpers import last, stamps


def crafted(job, change) -> Path:
    """A real ``last.ckpt`` (one pair in progress after 2 steps), changed by ``change(checkpoint)``."""
    assert job("--trainer.max_steps", "2")[0] == 0
    checkpoint = torch.load(last(job), weights_only=True)
    change(checkpoint)
    torch.save(checkpoint, last(job))
    return last(job)


def test_a_checkpoint_cannot_run_a_command(job, tmp_path):
    witness = tmp_path / "code-ran"

    def runs_code(checkpoint):
        checkpoint["hyper_parameters"]["optimizer"] = {"class_path": "os.system",
                                                       "init_args": {"command": f"touch {witness}"}}
        checkpoint["hyper_parameters"]["init"] = {"class_path": "builtins.exec",
                                                  "init_args": {"source": f"open('{witness}', 'w')"}}

    crafted(job, runs_code)
    code, out = job("--ckpt_path", "last")
    assert code == 0 and "the job: 3 of 3 done" in out
    assert not witness.exists()


@pytest.mark.parametrize("name", ["../escaped", "/tmp/lightning-style-escaped", "p1__swirls"])
def test_names_in_a_checkpoint_never_become_file_names(job, tmp_path, name):
    crafted(job, lambda checkpoint: checkpoint["PairDataModule"]["batches"][0].__setitem__(0, name))
    with pytest.warns(UserWarning, match=r"1 batch\(es\) in progress start again \(" + (
            "p1__swirls: " if name == "p1__swirls" else f"{name} is not a pair of this run")):
        code, out = job("--ckpt_path", "last")
    assert code == 0 and "the job: 3 of 3 done" in out
    assert not (tmp_path / "escaped.png").exists() and not Path("/tmp/lightning-style-escaped.png").exists()
    assert sorted(path.name for path in job.out.glob("*.png")) == ["p0__swirls.png", "p1__swirls.png", "p2__swirls.png"]


@pytest.mark.parametrize("without_dirpath", [False, True], ids=["as-saved", "dirpath-removed"])
def test_a_checkpoint_cannot_delete_a_file_or_a_folder(job, tmp_path, without_dirpath):
    # Lightning's ModelCheckpoint removes its previous last_model_path when it is under its folder, as the path
    # reads: <dirpath>/../../x passes. With no dirpath in the state it takes the path as it is.
    victim = tmp_path / "precious"
    (victim / "inside").mkdir(parents=True)
    (victim / "inside" / "file.txt").write_text("keep me")

    def names_the_victim(checkpoint):
        for state in checkpoint["callbacks"].values():
            if "dirpath" in state:
                state["last_model_path"] = f"{state['dirpath']}/../../precious"
                if without_dirpath:
                    del state["dirpath"]

    crafted(job, names_the_victim)
    assert job("--ckpt_path", "last")[0] == 0
    assert (victim / "inside" / "file.txt").read_text() == "keep me"


def test_a_checkpoint_does_not_set_the_optimiser_arguments(job, monkeypatch):
    def other_arguments(checkpoint):
        checkpoint["in_progress"][0]["optimizer"]["param_groups"][0].update(lr="abc", betas=[2.0, 2.0])

    crafted(job, other_arguments)
    seen = []
    from lightning_style.in_progress import load_optimizer_state

    def spy(optimizer, state, where):
        load_optimizer_state(optimizer, state, where)
        seen.append(dict(optimizer.param_groups[0]))

    monkeypatch.setattr("lightning_style.batch.load_optimizer_state", spy)
    code, out = job("--ckpt_path", "last")
    assert code == 0 and "the job: 3 of 3 done" in out
    assert seen[0]["lr"] == 0.02 and tuple(seen[0]["betas"]) == (0.9, 0.999)  # this run's, not the checkpoint's


@pytest.mark.parametrize("case, field, problem", [
    ("huge", "in_progress.images",
     "torch.float32 (1, 3, 6000, 6000), where this batch's images are float32 (1, 3, 24, 32)"),
    ("nan", "in_progress.images", "NaN or infinite values"),
    ("optimizer", "in_progress.optimizer", "a tensor of another shape than the batch's images (1, 3, 24, 32)"),
    ("moment", "in_progress.optimizer", "a tensor of another shape than the batch's images (1, 3, 24, 32)"),
    ("history", "in_progress.optimizer", "larger than this batch's images allow"),
    ("data", "PairDataModule", "not a dict"),
    ("callbacks", "callbacks", "not a dict"),
    ("loops", "loops.fit_loop", "not a dict"),
    ("within", "PairDataModule.within", "9 is not between 0 and steps"),
    ("world", "PairDataModule.world", "below 1"),
    ("batches", "PairDataModule.batches", "not a list of lists of pair names"),
    ("missing", "global_step", "not a int"),
])
def test_malformed_checkpoints_give_one_line_and_allocate_nothing_large(job, case, field, problem):
    def change(checkpoint):
        entry, data = checkpoint["in_progress"][0], checkpoint["PairDataModule"]
        if case == "huge":  # 4 bytes in the file, 432 MB once copied
            entry["images"] = torch.zeros(1).expand(1, 3, 6000, 6000)
        elif case == "nan":
            entry["images"][0, 0, 0, 0] = float("nan")
        elif case == "optimizer":
            entry["optimizer"]["state"][0]["exp_avg"] = torch.zeros(1).expand(10**5, 10**5)
        elif case == "moment":
            entry["optimizer"]["state"][0]["exp_avg"] = torch.zeros(7)
        elif case == "history":  # image-sized, 4 bytes each in the file: 10,000 of them
            entry["optimizer"]["state"][0]["old_dirs"] = [torch.zeros(1).expand(1, 3, 24, 32)] * 10000
        elif case == "data":
            checkpoint["PairDataModule"] = [1, 2]
        elif case == "callbacks":
            checkpoint["callbacks"] = [1]
        elif case == "loops":
            checkpoint["loops"] = {}
        elif case == "within":
            data["within"] = 9
        elif case == "world":
            data["world"] = 0
        elif case == "batches":
            data["batches"] = "p0__swirls"
        elif case == "missing":
            del checkpoint["global_step"]

    path = crafted(job, change)
    before = stamps(job.out)
    code, _ = job("--ckpt_path", "last")
    assert code.startswith(f"lightning-style: error: --ckpt_path {path}: malformed checkpoint field {field} "
                           f"({problem}"), code
    assert "\n" not in code
    assert stamps(job.out) == before
