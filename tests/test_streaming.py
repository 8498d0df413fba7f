"""Any number of pairs through fixed-size batches: the plan, the objective on its own, memory that does not grow
with the pairs, a killed run that goes on without redoing finished pairs, and a file that fails late."""

import itertools
import signal

import pytest
import torch

from lightning_style import StyleObjective
from lightning_style.features import VGGFeatures
from lightning_style.plan import Plan

from collect_results import load_results
from helpers import ROOT, collected, fit, run_cli, run_main, write_image


@pytest.mark.parametrize("pairs, batch_size, world",
                         list(itertools.product([1, 2, 3, 7, 10, 33], [1, 2, 4, 8], [1, 2, 3, 8])))
def test_every_pair_is_planned_once_and_the_processes_share_evenly(pairs, batch_size, world):
    shapes = [(32, 40) if k % 3 else (40, 32) for k in range(pairs)]
    plan = Plan.deal(shapes, batch_size, world, steps=5, base=10)
    batches = [batch for rank in plan.batches for batch in rank]
    assert sorted(pair for batch in batches for pair in batch) == list(range(pairs))  # none dropped, none twice
    assert all(len({shapes[pair] for pair in batch}) <= 1 and len(batch) <= batch_size for batch in batches)
    assert len({len(rank) for rank in plan.batches}) == 1  # every process runs the same number of steps
    idle = sum(not batch for batch in batches)
    assert idle == 0 or all(len(batch) <= 1 for batch in batches)  # a process idles only when nothing can be split
    assert idle < world
    assert plan.end == 10 + len(plan.batches[0]) * 5
    assert plan.pairs_done(plan.end) == list(range(pairs)) and plan.pairs_done(10) == []
    assert [plan.count_done(step) for step in range(10, plan.end + 1)] == [
        len(plan.pairs_done(step)) for step in range(10, plan.end + 1)]


def test_the_objective_alone_gives_each_pair_its_own_loss():
    torch.manual_seed(0)
    features = VGGFeatures(["relu1_1", "relu2_1", "relu2_2"], backbone="vgg16", weights=None)
    contents, styles = torch.rand(2, 3, 24, 32), [(torch.rand(3, 30, 30),), (torch.rand(3, 20, 28),)]
    layers = {"content_layers": {"relu2_2": 1.0}, "style_layers": {"relu1_1": 0.5, "relu2_1": 0.5}}
    both = StyleObjective(features, contents, styles, style_weights=[(1.0,), (1.0,)], **layers)
    second = StyleObjective(features, contents[1:], styles[1:], style_weights=[(1.0,)], **layers)
    images = torch.rand(2, 3, 24, 32)
    losses = both(images)
    assert set(losses) == {"loss", "content", "style", "tv", "temporal", "style/relu1_1", "style/relu2_1"}
    assert all(value.shape == (2,) for value in losses.values())
    torch.testing.assert_close(losses["loss"][1:], second(images[1:])["loss"])
    assert both(contents)["content"].abs().max() < 1e-6  # the content itself has no content loss
    assert not list(both.state_dict())  # targets are rebuilt from pixels, never saved


def test_batches_stream_through_the_module(tmp_path):
    contents = [write_image(tmp_path / "in" / f"photo{k}.png", seed=k) for k in range(5)]
    style = write_image(tmp_path / "paint.png", seed=9)
    model, trainer = fit(tmp_path, [str(path) for path in contents], str(style), steps=2, batch_size=2)
    assert sorted(collected(trainer)) == [f"photo{k}__paint" for k in range(5)]
    assert trainer.global_step == 3 * 2  # batches of 2, 2 and 1
    assert sorted(path.name for path in (tmp_path / "images").iterdir()) == [f"photo{k}__paint.png" for k in range(5)]
    assert model.images.shape[0] == 1  # only the last batch is held


def test_a_pair_gives_the_same_result_in_any_batch(tmp_path):
    contents = [str(write_image(tmp_path / "in" / f"photo{k}.png", seed=k)) for k in range(3)]
    style = str(write_image(tmp_path / "paint.png", seed=9))
    runs = [collected(fit(tmp_path / f"b{size}", contents, style, steps=3, batch_size=size, init="noise")[1])
            for size in (1, 3)]
    for name in runs[0]:
        torch.testing.assert_close(runs[0][name], runs[1][name], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("workers", [1, 2])
def test_loader_workers_decode_ahead_and_change_nothing(tmp_path, workers):
    """``num_workers`` processes decode inside the plan's loader: every step's batch, in order, as without them."""
    contents = [str(write_image(tmp_path / "in" / f"photo{k}.png", size=(48, 40) if k < 3 else (40, 48), seed=k))
                for k in range(5)]
    style = str(write_image(tmp_path / "paint.png", seed=9))
    alone = collected(fit(tmp_path / "w0", contents, style, steps=3, batch_size=2)[1])
    model, trainer = fit(tmp_path / f"w{workers}", contents, style, steps=3, batch_size=2, num_workers=workers)
    assert trainer.global_step == 3 * 3  # batches of 2, 1 | 2 (two shapes)
    ahead = collected(trainer)
    assert sorted(ahead) == sorted(alone) and len(alone) == 5
    for name in alone:
        torch.testing.assert_close(ahead[name], alone[name], atol=1e-6, rtol=0)


@pytest.mark.slow
def test_memory_does_not_grow_with_the_number_of_pairs(tmp_path, monkeypatch):
    """Sixteen pairs of 128x96 px in batches of 2, through the command line in this process: after every batch the
    process holds the same tensors (to the byte), no autograd graph, one PIL image at most, and next to no new Python
    memory. Counted, not sampled from the allocator: holding one pair's image would add 147 KB of tensors, or 37 KB
    of 8-bit pixels, per pair (the resident memory of 10 to 1000 pairs: README, "Many pairs, several devices")."""
    from held_memory import HeldMemory

    for k in range(8):
        write_image(tmp_path / "contents" / f"c{k}.png", size=(128, 96), seed=k)
    for k in range(2):
        write_image(tmp_path / "styles" / f"s{k}.png", size=(128, 96), seed=100 + k)
    monkeypatch.chdir(ROOT)
    code, _ = run_main("fit", "--config", "configs/debug.yaml", "--data.image_size", "128",
                       "--data.content", str(tmp_path / "contents"), "--data.style", str(tmp_path / "styles"),
                       "--data.batch_size", "2", "--data.steps", "1", "--model.style_layers", "[relu1_1]",
                       "--model.content_layers", "[relu1_1]", "--trainer.enable_progress_bar", "false",
                       "--trainer.logger", "false",  # a logger buffers its rows: its memory, not the run's
                       "--trainer.callbacks+=held_memory.HeldMemory", "--output.dir", str(tmp_path / "out"))
    assert code == 0 and len(list((tmp_path / "out").glob("*.png"))) == 16
    held = HeldMemory.latest.after_batch[1:]  # from the second batch's end: the first sets up what is kept
    assert len(held) == 7
    assert len({batch["tensor_bytes"] for batch in held}) == 1, held
    assert all(batch["graphs"] == 0 and batch["pictures"] <= 1 for batch in held), held
    pairs = 2 * (len(held) - 1)  # measured: 1.2 KB a pair, small objects of Lightning's and PIL's
    assert held[-1]["python_bytes"] - held[0]["python_bytes"] < pairs * 4096, held


def test_a_file_that_fails_to_decode_late_skips_its_pair(tmp_path, monkeypatch, capsys):
    photos = tmp_path / "photos"
    for k in range(3):
        write_image(photos / f"p{k}.png", size=(64, 48), seed=k)
    data = (photos / "p1.png").read_bytes()
    (photos / "p1.png").write_bytes(data[: len(data) // 2])  # the header is fine: found when its batch comes up
    monkeypatch.chdir(ROOT)
    from helpers import run_main

    args = ["fit", "--config", "configs/default.yaml", "--config", "configs/debug.yaml", "--data.content", str(photos),
            "--data.batch_size", "1", "--output.dir", str(tmp_path / "out"), "--trainer.logger", "false",
            "--trainer.default_root_dir", str(tmp_path)]
    with pytest.warns(UserWarning, match=r"skipping pair p1__swirls: content .*p1.png: truncated or corrupt image"):
        code, _ = run_main(*args)
    assert code == 1
    summary = capsys.readouterr().out
    assert "this run: 2 pairs in" in summary and "the job: 2 of 3 done, 1 skipped" in summary and "to go on" in summary
    assert sorted(path.name for path in (tmp_path / "out").glob("*.png")) == ["p0__swirls.png", "p2__swirls.png"]
    # The file mended, the same command does what is left, and only that.
    written = {path.name: path.stat().st_mtime_ns for path in (tmp_path / "out").glob("*.png")}
    (photos / "p1.png").write_bytes(data)
    assert run_main(*args)[0] == 0
    summary = capsys.readouterr().out
    assert "this run: 1 pair in" in summary and "the job: 3 of 3 done;" in summary and "to go on" not in summary
    assert all((tmp_path / "out" / name).stat().st_mtime_ns == mtime for name, mtime in written.items())


@pytest.mark.slow
def test_killed_run_goes_on_without_redoing_finished_pairs(tmp_path, monkeypatch):
    for k in range(3):
        write_image(tmp_path / "photos" / f"p{k}.png", size=(64, 48), seed=k)
    args = ["fit", "--config", "configs/debug.yaml", "--model.init", "noise",
            "--data.content", str(tmp_path / "photos"), "--data.batch_size", "1", "--data.steps", "10",
            "--trainer.logger", "false",
            "--trainer.callbacks+=collect_results.SaveFinished", "--output.dir", str(tmp_path / "out")]
    # Killed (SIGKILL, by itself: no timing involved) at step 13: p0 finished at step 10, p1 in progress. The last
    # checkpoint is step 10's, p0's batch end (checkpoints otherwise come every 100 steps).
    killed = run_cli(*args, "--trainer.callbacks+=failing_callback.KillAtStep", "--trainer.callbacks.step", "13",
                     env={"PYTHONPATH": str(ROOT / "tests"), "LIGHTNING_STYLE_TEST_RESULTS": str(tmp_path / "killed")})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert torch.load(tmp_path / "out" / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 10
    first = tmp_path / "out" / "p0__swirls.png"
    written = first.stat().st_mtime_ns
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("LIGHTNING_STYLE_TEST_RESULTS", str(tmp_path / "resumed"))
    assert run_main(*args, "--ckpt_path", "last")[0] == 0
    assert first.stat().st_mtime_ns == written  # finished before the kill: not redone
    assert "p0__swirls" not in load_results(tmp_path / "resumed")
    monkeypatch.setenv("LIGHTNING_STYLE_TEST_RESULTS", str(tmp_path / "straight-results"))
    assert run_main(*args[:-1], str(tmp_path / "straight"))[0] == 0
    pieces = {**load_results(tmp_path / "killed"), **load_results(tmp_path / "resumed")}
    expected = load_results(tmp_path / "straight-results")
    assert pieces.keys() == expected.keys() == {"p0__swirls", "p1__swirls", "p2__swirls"}
    for name in expected:
        torch.testing.assert_close(pieces[name], expected[name], atol=1e-6, rtol=0, msg=name)
