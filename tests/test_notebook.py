import nbformat
from nbclient import NotebookClient

from conftest import ROOT


def test_quickstart_notebook_runs_offline(monkeypatch, tmp_path):
    monkeypatch.setenv("LIGHTNING_STYLE_SMOKE", "1")
    monkeypatch.setenv("LIGHTNING_STYLE_OUT", str(tmp_path))  # nothing written into the checkout
    notebook = nbformat.read(ROOT / "notebooks" / "quickstart.ipynb", as_version=4)
    NotebookClient(notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    assert not [output for output in outputs if output.output_type == "error"]
    assert sum(output.output_type == "display_data" and "image/png" in output.data for output in outputs) == 2
    assert (tmp_path / "chelsea__swirls.png").exists()
