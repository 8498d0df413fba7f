"""The benchmarks that CI runs at toy sizes: the GPU report's code on the CPU (``--smoke``), so that it works the day a
GPU is lent, and the quality benchmark."""

import json
import subprocess
import sys

import pytest

from conftest import ROOT


@pytest.mark.slow
def test_the_gpu_report_runs_every_part_on_the_cpu(tmp_path):
    result = subprocess.run([sys.executable, "benchmarks/gpu_report.py", "--smoke", "--out", str(tmp_path)],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["smoke"] and "skipped" in report["tests"]["summary"]  # the GPU lane, skipped without CUDA
    assert [row["precision"] for row in report["precisions"]] == ["32-true", "tf32", "bf16-mixed"]
    assert all(row["plain_ms"] > 0 and row["lightning_ms"] > 0 for row in report["precisions"])
    assert [row["pairs"] for row in report["sweep"]] == [1, 2] and all(row["pair_steps_per_s"] > 0 for row in report["sweep"])
    assert report["largest"]["plain"]["largest_side_that_fits"] == 48
    assert {row["optimizer"] for row in report["time_to_loss"]} == {"adam", "lbfgs"}
    table = (tmp_path / "report.md").read_text()
    assert "pair-steps/s" in table and "SMOKE RUN" in table


@pytest.mark.slow
def test_the_quality_benchmark_scores_every_run(tmp_path, hed_weights):
    """``benchmarks/quality.py`` at a toy size: every run, a table, the panels."""
    result = subprocess.run([sys.executable, "benchmarks/quality.py", "--size", "64", "--steps", "4", "--lbfgs_steps", "2",
                             "--every", "2", "--weights", str(hed_weights), "--out", str(tmp_path)],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((tmp_path / "quality.json").read_text())
    assert len(results) == 8 and results["gram-adam"]["summary"]["steps"] == 4
    start = results["gram-adam"]["trace"][0]
    assert start["steps"] == 0 and abs(start["score"] - 1) < 1e-6  # the photo scores 1 against itself
    assert all(0 < r["summary"]["edge_ssim"] <= 1 and 0 <= r["summary"]["colour"] <= 1 for r in results.values())
    assert "| sliced-lbfgs | 2 |" in (tmp_path / "quality.md").read_text()
    assert (tmp_path / "panel_chelsea.jpg").is_file() and (tmp_path / "panel_astronaut.jpg").is_file()
