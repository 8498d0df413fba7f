"""Start-up with many small files: what a run reads before any compute, and a rerun once every result is done.

Makes ``--count`` small photos (64x48 PNGs) and one style image in a temporary folder, then times:

1. ``PairDataModule(...)``: every file's header read and every file fingerprinted (``record.fingerprint``);
2. ``Record.survey``: the provenance of every result read back (a rerun's look at what is done), every result there;
3. the whole command ``lightning-style fit`` with every result done (it plans nothing and stops), in a fresh
   process: import, VGG, the checks, (1) and (2), as a user waits for it;

and the peak resident memory of (1)+(2) and of (3).

    python benchmarks/startup.py --count 10000
"""

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
from PIL import Image

from lightning_style import PairDataModule, StyleTransfer
from lightning_style.record import Record, plain

STYLE = Path(__file__).resolve().parents[1] / "examples/style/swirls.png"
OPTIONS = ["--model.backbone", "vgg16", "--model.weights", "null", "--data.steps", "1", "--data.image_size", "64",
           "--trainer.accelerator", "cpu", "--trainer.logger", "false", "--trainer.enable_progress_bar", "false"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=10000)
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        photos, out = Path(tmp) / "photos", Path(tmp) / "out"
        photos.mkdir()
        rng = np.random.default_rng(0)
        for k in range(opts.count):
            Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(photos / f"p{k:05d}.png")
        size = sum(path.stat().st_size for path in photos.iterdir()) / opts.count

        started = time.perf_counter()
        data = PairDataModule(str(photos), str(STYLE), image_size=64, steps=1)
        headers = time.perf_counter() - started

        # The results as a finished job leaves them, with the provenance the command line gives them.
        model = StyleTransfer(backbone="vgg16", weights=None)
        model.trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False)
        settings = model.result_settings()
        expected = {name: plain({"pair": name, "inputs": data.inputs(i), "settings": settings})
                    for i, name in enumerate(data.names)}
        record, tiny = Record(out), Image.new("RGB", (64, 48))
        for name, provenance in expected.items():
            record.write(name, tiny, {**provenance, "steps": 1})
        started = time.perf_counter()
        done, redo = record.survey(expected)
        survey = time.perf_counter() - started
        assert len(done) == opts.count and not redo, (len(done), list(redo.items())[:3])
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20

        started = time.perf_counter()
        command = [str(Path(sys.executable).with_name("lightning-style")), "fit", "--data.content", str(photos),
                   "--data.style", str(STYLE), "--output.dir", str(out), *OPTIONS]
        result = subprocess.run(command, capture_output=True, text=True)
        whole = time.perf_counter() - started
        assert result.returncode == 0 and f"{opts.count} of {opts.count} pairs are done" in result.stdout, (
            result.stdout + result.stderr[-2000:])
        child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
    print(f"{opts.count:,} photos of {size / 1024:.1f} KiB (64x48 PNG), one style:")
    print(f"  headers + fingerprints (PairDataModule): {headers:.2f} s ({headers / opts.count * 1e6:.0f} us a file)")
    print(f"  provenance of {opts.count:,} results read (Record.survey): {survey:.2f} s "
          f"({survey / opts.count * 1e6:.0f} us a result)")
    print(f"  peak memory of both, in this process: {peak:.2f} GB")
    print(f"  the whole command with every result done (a fresh process: imports, VGG, checks): {whole:.1f} s, "
          f"peak memory {child:.2f} GB")
    print(f"  its summary: {result.stdout.strip().splitlines()[-1]}")


if __name__ == "__main__":
    main()
