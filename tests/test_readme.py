"""The README's Python snippet runs as printed, offline with the one line its comment names, and quietly: in a
process of its own, as a user's script, with Python's default warning filters."""

import os
import re
import shutil
import subprocess
import sys

from helpers import ROOT


def test_the_readme_python_snippet_runs_offline_and_quietly(tmp_path, hed_weights):
    readme = (ROOT / "README.md").read_text()
    (snippet,) = re.findall(r"```python\n(.*?)```", readme, re.S)
    model_line = next(line for line in snippet.splitlines() if line.startswith("model = "))
    offline = model_line.split("# offline: ")[1]
    (tmp_path / "torch" / "hub" / "checkpoints").mkdir(parents=True)  # where the weights name HED looks
    shutil.copy(hed_weights, tmp_path / "torch" / "hub" / "checkpoints" / "hed_vgg16_features.pth")
    # 2 steps a pair: Lightning would rightly warn that its default of one log every 50 steps logs nothing.
    code = (snippet.replace(model_line, f"model = {offline}").replace("steps=500", "steps=2")
            .replace("pl.Trainer(", "pl.Trainer(log_every_n_steps=1, ")
            .replace("image_size=512", "image_size=64").replace('"outputs"', repr(str(tmp_path / "out"))))
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "TORCH_HOME": str(tmp_path / "torch")}, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    assert sorted(path.name for path in (tmp_path / "out").glob("*.png")) == [
        "astronaut__embers.png", "astronaut__swirls.png", "chelsea__embers.png", "chelsea__swirls.png"]
    assert "__" in result.stdout
    output = result.stdout + result.stderr
    assert "Tip" not in output  # Lightning's adverts for other products
    assert [line for line in output.splitlines() if re.search(r"\.py:\d+: ", line)] == []  # no warning at all
