import re

import nbformat
import pytest
from nbclient import NotebookClient

from lightning_style import load_image
from lightning_style.record import Record

from helpers import ROOT

NOTEBOOK = ROOT / "notebooks" / "quickstart.ipynb"


def pictures(notebook) -> int:
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    assert not [output for output in outputs if output.output_type == "error"]
    return sum(output.output_type == "display_data" and "image/png" in output.data for output in outputs)


def test_the_notebook_ships_with_its_pictures():
    """A reader sees the result without running anything: saved with the outputs of a real (offline) run."""
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    assert pictures(notebook) == 2
    assert "OFFLINE = True" in notebook.cells[1].source  # the switch the saved outputs were made with
    # Saved as a reader should see it, and as running it again saves it: no warning (a path of the machine that ran
    # it), no times (a progress bar's, the cells' execution times).
    texts = [output.get("text", "") for cell in notebook.cells for output in cell.get("outputs", [])]
    assert not [text for text in texts if re.search(r"\.py:\d+: |it/s|s/it", text)]
    assert not [cell for cell in notebook.cells if "execution" in cell.metadata]


@pytest.mark.slow  # end-to-end: python -m pytest -m 'not slow' skips it
def test_quickstart_notebook_runs_offline(monkeypatch, tmp_path):
    monkeypatch.setenv("LIGHTNING_STYLE_SMOKE", "1")
    monkeypatch.setenv("LIGHTNING_STYLE_OUT", str(tmp_path))  # nothing written into the checkout
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    resources = {"metadata": {"path": str(ROOT / "notebooks")}}
    NotebookClient(notebook, timeout=300, kernel_name="python3", resources=resources).execute()
    assert pictures(notebook) == 2
    record = Record(tmp_path).read("chelsea__swirls")  # the PNG it wrote, with its provenance
    assert record["complete"] and record["steps"] == 5
    result = load_image(tmp_path / "chelsea__swirls.png")
    content = load_image(ROOT / "examples/content/chelsea.png", result.shape[2])
    assert (result - content).abs().mean() > 0.02  # stylised: five steps moved the photo's pixels
