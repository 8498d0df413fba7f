"""The benchmarks that CI runs at toy sizes: the GPU report's code on the CPU (``--smoke``), so that it works the day a
GPU is lent, and the quality benchmark. Each runs its ``main`` in this process (a process of its own would spend
seconds importing torch and Lightning again)."""

import importlib.util
import json
import logging

import pytest
import torch

from helpers import ROOT


@pytest.fixture
def benchmark(monkeypatch):
    """``benchmark(name)``: the script ``benchmarks/<name>.py`` as a module (its siblings importable, as when it runs
    as a script); what its ``main`` sets for the whole process is put back afterwards."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    monkeypatch.chdir(ROOT)
    lightning_log = logging.getLogger("pytorch_lightning")
    level, matmul, cudnn = lightning_log.level, torch.get_float32_matmul_precision(), torch.backends.cudnn.benchmark
    yield lambda name: load(name)
    lightning_log.setLevel(level)
    torch.set_float32_matmul_precision(matmul)
    torch.backends.cudnn.benchmark = cudnn


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_the_gpu_report_runs_every_part_on_the_cpu(tmp_path, benchmark):
    benchmark("gpu_report").main(["--smoke", "--out", str(tmp_path)])
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["smoke"] and "skipped" in report["tests"]["summary"]  # the GPU lane, skipped without CUDA
    assert [row["precision"] for row in report["precisions"]] == ["32-true", "tf32", "bf16-mixed"]
    assert all(row["plain_ms"] > 0 and row["lightning_ms"] > 0 for row in report["precisions"])
    assert [row["pairs"] for row in report["sweep"]] == [1, 2]
    assert all(row["pair_steps_per_s"] > 0 for row in report["sweep"])
    assert report["largest"]["plain"]["largest_side_that_fits"] == 48
    assert {row["optimizer"] for row in report["time_to_loss"]} == {"adam", "lbfgs"}
    table = (tmp_path / "report.md").read_text()
    assert "pair-steps/s" in table and "SMOKE RUN" in table


def test_every_test_marked_gpu_is_in_the_file_the_gpu_report_runs(request):
    """The report runs only ``tests/test_gpu.py`` (collecting the whole suite costs 10 s): a GPU test elsewhere
    would never run on the lent GPU. Checked over the tests of this session (the whole suite in CI)."""
    gpu = [item for item in request.session.items if item.get_closest_marker("gpu")]
    assert all(item.path.name == "test_gpu.py" for item in gpu), [item.nodeid for item in gpu]


@pytest.mark.slow
def test_the_quality_benchmark_scores_a_run_of_each_kind(tmp_path, hed_weights, benchmark):
    """``benchmarks/quality.py`` at a toy size: a run of each kind (the reference, L-BFGS with the sliced loss, the
    pyramid), a table, the panels."""
    runs = ["gram-adam", "sliced-lbfgs", "gram-adam-pyramid"]
    benchmark("quality").main(["--size", "64", "--steps", "4", "--lbfgs_steps", "2", "--every", "2", "--weights",
                               str(hed_weights), "--out", str(tmp_path), "--runs", *runs])
    results = json.loads((tmp_path / "quality.json").read_text())
    assert list(results) == runs and results["gram-adam"]["summary"]["steps"] == 4
    start = results["gram-adam"]["trace"][0]
    assert start["steps"] == 0 and abs(start["score"] - 1) < 1e-6  # the photo scores 1 against itself
    assert all(0 < r["summary"]["edge_ssim"] <= 1 and 0 <= r["summary"]["colour"] <= 1 for r in results.values())
    assert "| sliced-lbfgs | 2 |" in (tmp_path / "quality.md").read_text()
    assert (tmp_path / "panel_chelsea.jpg").is_file() and (tmp_path / "panel_astronaut.jpg").is_file()


def test_the_quality_benchmark_reports_what_a_plateau_stop_saved():
    quality = load("quality")
    summary = {"steps": 500, "score": 0.026, "content": 1.2}
    line = quality.plateau_line("gram-adam-plateau", {"summary": summary, "stopped_at": [300, None]},
                                {"summary": {"score": 0.025, "content": 1.18}})
    # 800 of 1000 planned steps; a fixed 500 steps for the same quality: the same 800 of 1000
    assert "stopped at steps 300, 500 of 500, 20% fewer steps than planned" in line
    assert "without the stop: 0.025" in line
    assert line.endswith("(every pair run for 500 steps): 20% fewer.")
    line = quality.plateau_line("gram-adam-plateau", {"summary": summary, "stopped_at": [300, 200]}, None)
    assert "50% fewer steps than planned" in line and line.endswith("(every pair run for 300 steps): 17% fewer.")
