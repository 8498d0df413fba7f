"""The GPU report's code, run on the CPU at toy sizes (``--smoke``), so that it works the day a GPU is lent."""

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
