"""The benchmarks that CI runs at toy sizes: the GPU report's code on the CPU (``--smoke``), so that it works the day a
GPU is lent, and the quality benchmark."""

import importlib.util
import json
import subprocess
import sys

import pytest

from helpers import ROOT


@pytest.mark.slow
def test_the_gpu_report_runs_every_part_on_the_cpu(tmp_path):
    result = subprocess.run([sys.executable, "benchmarks/gpu_report.py", "--smoke", "--out", str(tmp_path)],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
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
def test_the_quality_benchmark_scores_a_run_of_each_kind(tmp_path, hed_weights):
    """``benchmarks/quality.py`` at a toy size: a run of each kind (the reference, L-BFGS with the sliced loss, the
    pyramid), a table, the panels."""
    runs = ["gram-adam", "sliced-lbfgs", "gram-adam-pyramid"]
    result = subprocess.run([sys.executable, "benchmarks/quality.py", "--size", "64", "--steps", "4",
                             "--lbfgs_steps", "2", "--every", "2", "--weights", str(hed_weights),
                             "--out", str(tmp_path), "--runs", *runs],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((tmp_path / "quality.json").read_text())
    assert list(results) == runs and results["gram-adam"]["summary"]["steps"] == 4
    start = results["gram-adam"]["trace"][0]
    assert start["steps"] == 0 and abs(start["score"] - 1) < 1e-6  # the photo scores 1 against itself
    assert all(0 < r["summary"]["edge_ssim"] <= 1 and 0 <= r["summary"]["colour"] <= 1 for r in results.values())
    assert "| sliced-lbfgs | 2 |" in (tmp_path / "quality.md").read_text()
    assert (tmp_path / "panel_chelsea.jpg").is_file() and (tmp_path / "panel_astronaut.jpg").is_file()


def test_the_quality_benchmark_reports_what_a_plateau_stop_saved():
    spec = importlib.util.spec_from_file_location("quality", ROOT / "benchmarks" / "quality.py")
    quality = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(quality)
    summary = {"steps": 500, "score": 0.026, "content": 1.2}
    line = quality.plateau_line("gram-adam-plateau", {"summary": summary, "stopped_at": [300, None]},
                                {"summary": {"score": 0.025, "content": 1.18}})
    # 800 of 1000 planned steps; a fixed 500 steps for the same quality: the same 800 of 1000
    assert "stopped at steps 300, 500 of 500, 20% fewer steps than planned" in line
    assert "without the stop: 0.025" in line
    assert line.endswith("(every pair run for 500 steps): 20% fewer.")
    line = quality.plateau_line("gram-adam-plateau", {"summary": summary, "stopped_at": [300, 200]}, None)
    assert "50% fewer steps than planned" in line and line.endswith("(every pair run for 300 steps): 17% fewer.")
