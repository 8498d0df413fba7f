import nbformat
import pytest
from nbclient import NotebookClient

from conftest import ROOT

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


@pytest.mark.slow  # end-to-end: python -m pytest -m 'not slow' skips it
def test_quickstart_notebook_runs_offline(monkeypatch, tmp_path):
    monkeypatch.setenv("LIGHTNING_STYLE_SMOKE", "1")
    monkeypatch.setenv("LIGHTNING_STYLE_OUT", str(tmp_path))  # nothing written into the checkout
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()
    assert pictures(notebook) == 2
    assert (tmp_path / "chelsea__swirls.png").exists()
