"""The README's Python snippet runs as printed, offline with the one line its comment names."""

import re
import shutil

import pytorch_lightning as pl

from conftest import ROOT


def test_the_readme_python_snippet_runs_offline(tmp_path, monkeypatch, hed_weights, capsys):
    readme = (ROOT / "README.md").read_text()
    (snippet,) = re.findall(r"```python\n(.*?)```", readme, re.S)
    model_line = next(line for line in snippet.splitlines() if line.startswith("model = "))
    offline = model_line.split("# offline: ")[1]
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # where the weights name HED looks
    (tmp_path / "torch" / "hub" / "checkpoints").mkdir(parents=True)
    shutil.copy(hed_weights, tmp_path / "torch" / "hub" / "checkpoints" / "hed_vgg16_features.pth")
    monkeypatch.chdir(ROOT)
    code = (snippet.replace(model_line, f"model = {offline}").replace("steps=500", "steps=2")
            .replace("image_size=512", "image_size=64").replace('"outputs"', repr(str(tmp_path / "out"))))
    pl.seed_everything(0, verbose=False)
    exec(compile(code, "README.md", "exec"), {})
    assert sorted(path.name for path in (tmp_path / "out").glob("*.png")) == [
        "astronaut__embers.png", "astronaut__swirls.png", "chelsea__embers.png", "chelsea__swirls.png"]
    assert "__" in capsys.readouterr().out
