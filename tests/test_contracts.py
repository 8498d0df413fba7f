"""Small contracts that a broken implementation would slip past the end-to-end tests: where the plan puts a step,
how often a result is written, where a file is staged, which loss goes in which column, and each error's words."""

import os
from pathlib import Path

import pytest
import torch

from lightning_style import OptionError, PairDataModule
from lightning_style.batch import BatchResult, Pyramid
from lightning_style.files import replace_atomically
from lightning_style.image_logger import ImageLogger
from lightning_style.plan import Plan
from lightning_style.record import Record

from helpers import fit, run_main


def test_plan_at_counts_from_its_base():
    plan = Plan.deal([(4, 4)] * 3, batch_size=1, world=1, steps=5, base=7)
    assert [plan.at(step) for step in (7, 11, 12, 21)] == [(0, 0), (0, 4), (1, 0), (2, 4)]
    assert plan.end == 22 and plan.count_done(12) == 1 and plan.pairs_done(22) == [0, 1, 2]


def test_pyramid_levels():
    pyramid = Pyramid(levels=3, level_steps=2)
    assert pyramid.factors == (1, 2, 4)
    assert [step for step in range(8) if pyramid.starts_level(step)] == [2, 4]


def test_a_finished_pair_is_written_once(tmp_path, images, monkeypatch):
    writes = []
    original = Record.write

    def counted(self, name, image, provenance, *, partial=False):
        writes.append((name, partial))
        return original(self, name, image, provenance, partial=partial)

    monkeypatch.setattr(Record, "write", counted)
    fit(tmp_path, [images["content"], images["content2"]], images["style"], steps=3, batch_size=1)
    assert sorted(writes) == [("photo2__paint", False), ("photo__paint", False)]


def test_a_file_is_staged_beside_its_target(tmp_path, monkeypatch):
    """Renamed within one folder (one filesystem): atomic, whatever the system's temporary folder is."""
    renames = []
    original = os.replace
    monkeypatch.setattr(os, "replace",
                        lambda source, target: (renames.append((source, target)), original(source, target))[1])
    target = tmp_path / "out" / "result.png"
    target.parent.mkdir()
    replace_atomically(target, lambda file: file.write(b"new"))
    ((source, renamed),) = renames
    assert Path(source).parent == target.parent and Path(renamed) == target and target.read_bytes() == b"new"
    assert sorted(path.name for path in target.parent.iterdir()) == ["result.png"]


def test_the_table_row_puts_each_loss_in_its_column():
    result = BatchResult(("a__b",), torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8), ((torch.rand(3, 8, 8),),),
                         step=4, steps=4, global_step=4, complete=True,
                         losses={"loss": torch.tensor([6.0]), "content": torch.tensor([1.0]),
                                 "style": torch.tensor([2.0]), "tv": torch.tensor([3.0])})
    (pair,) = result
    row = ImageLogger(thumbnail=4).row(pair)
    assert (row.pair, row.loss, row.content_loss, row.style_loss) == ("a__b", 6.0, 1.0, 2.0)
    assert row.result.shape == (4, 4, 3) and -1 <= row.ssim <= 1 and row.psnr > 0


def test_a_process_that_idles_for_a_batch_publishes_an_empty_result():
    """More processes than batches: the idle one steps a dummy pixel and finishes with no pair (colour kept)."""
    from lightning_style.batch import BatchRun
    from lightning_style.pairs import PairBatch
    from lightning_style.plateau import Plateau

    run = BatchRun(PairBatch((), 0, 2, torch.zeros(0, 3, 1, 1)), None, init="content", seed=0, restored=None,
                   where="", new_optimizer=lambda params: torch.optim.Adam(params), pyramid=Pyramid(),
                   plateau=Plateau(), check_every_n_steps=1, luminance=True, global_step=0)
    assert run.idle and run.after_step(1) is None
    result = run.after_step(2)
    assert result.complete and result.names == () and result.images.shape == (0, 3, 1, 1) and run.snapshot() is None


def test_a_snapshot_is_the_last_checked_images(tmp_path, images):
    """Observers see the images of the last good check, never images that no check has passed."""
    snapshots = []

    class Look(__import__("pytorch_lightning").Callback):
        def on_train_batch_end(self, trainer, pl_module, *args):
            snapshots.append(pl_module.snapshot())

    fit(tmp_path, images["content"], images["style"], steps=8, check_every_n_steps=3, callbacks=[Look()])
    assert [s.step for s in snapshots] == [0, 0, 3, 3, 3, 6, 6, 8] and snapshots[7].complete  # the last: the result
    assert not any(s.complete for s in snapshots[:7])


@pytest.mark.parametrize(
    "kwargs, python, flag",
    [
        ({"steps": 0}, "PairDataModule(steps=0) must be a whole number >= 1", "--data.steps 0 must be"),
        ({"pairing": "zip", "style_weights": [1.0]}, "PairDataModule(style_weights=[1.0]) needs pairing='blend'",
         "--data.style_weights [1.0] needs"),
    ],
)
def test_a_data_error_in_python_words_and_in_flags(tmp_path, images, capsys, kwargs, python, flag):
    with pytest.raises(OptionError) as error:
        PairDataModule(str(images["content"]), str(images["style"]), **kwargs)
    assert str(error.value) == python
    args = [f"--data.{key}={value}" for key, value in kwargs.items()]
    code, _ = run_main("fit", "--data.content", str(images["content"]), "--data.style", str(images["style"]),
                       "--model.weights", "null", "--output.dir", str(tmp_path / "out"), *args)
    assert code.startswith(f"lightning-style: error: {flag}"), code


def test_a_vgg_error_names_the_model_flag_that_fed_it(tmp_path, images):
    code, _ = run_main("fit", "--data.content", str(images["content"]), "--data.style", str(images["style"]),
                       "--model.weights", str(tmp_path / "none.pth"), "--output.dir", str(tmp_path / "out"))
    assert code == (f"lightning-style: error: --model.weights {tmp_path / 'none.pth'} is neither a file nor a weights "
                    "name of vgg19_bn (IMAGENET1K_V1, DEFAULT)")
    assert not (tmp_path / "out").exists()


def test_an_init_image_is_an_input_of_each_result(images):
    """The data decodes the starting image (the model opens no file), and each result's provenance names it."""
    data = PairDataModule(str(images["content"]), str(images["style"]), init=str(images["style2"]), image_size=32)
    assert data.inputs(0)["init"] == data.fingerprints[Path(images["style2"])]
    assert "init" not in PairDataModule(str(images["content"]), str(images["style"])).inputs(0)
