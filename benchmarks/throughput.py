"""Pair-steps per second by batch size and image size, scaling over processes, and peak memory against the number
of pairs, all through the command line (``lightning_style.cli.main``) in a fresh process per run.

Speed: a callback times every step; a batch's first step (decoding, targets) is left out and the median of the
others gives seconds per step, so start-up is left out too; pair-steps/s = pairs in a batch / seconds per step
(summed over the processes with several). Memory is the peak resident set of the process, or the peak CUDA
allocation on a GPU.

    python benchmarks/throughput.py                       # everything, on this machine's CPU
    python benchmarks/throughput.py --only memory --pairs 10 100 1000
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
PHOTO, STYLE = ROOT / "examples/content/chelsea.png", ROOT / "examples/style/swirls.png"
def run(args: list[str], env: dict | None = None) -> tuple[float, float, int]:
    """Wall time, pair-steps per second (summed over the processes) and peak memory (bytes) of one run."""
    start = time.perf_counter()
    script = ROOT / "benchmarks" / "timed_fit.py"
    result = subprocess.run([sys.executable, str(script), "fit", *args, "--trainer.callbacks+=timed_fit.StepTimer"],
                            cwd=ROOT, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT / "benchmarks"), **(env or {})})
    if result.returncode:
        raise SystemExit(result.stderr[-3000:])
    lines = result.stdout.splitlines()
    rate = sum(float(line.split()[2]) / float(line.split()[1]) for line in lines if line.startswith("STEP"))
    peak = max(int(line.split()[1]) for line in lines if line.startswith("PEAK"))
    return time.perf_counter() - start, rate, peak


def command(contents: Path, size: int, batch: int, steps: int, out: Path, opts: argparse.Namespace,
            devices: int = 1) -> list[str]:
    return ["--config", "configs/default.yaml", "--model.weights", "null", "--model.backbone", opts.backbone,
            "--data.content", str(contents), "--data.style", str(STYLE), "--data.image_size", str(size),
            "--data.batch_size", str(batch), "--data.steps", str(steps), "--trainer.accelerator", opts.accelerator,
            "--trainer.devices", str(devices), "--trainer.strategy", "ddp" if devices > 1 else "auto",
            "--trainer.enable_progress_bar", "false", "--trainer.logger", "false", "--trainer.enable_checkpointing",
            "false", "--trainer.callbacks", "[]", "--images.every_n_steps", "0", "--output.dir", str(out),
            "--trainer.default_root_dir", str(out)]


def copies(folder: Path, count: int, size: int | None = None) -> Path:
    """``count`` copies of the example photo (one shape: full batches), resized to ``size`` if given."""
    folder.mkdir(parents=True, exist_ok=True)
    image = Image.open(PHOTO).convert("RGB")
    if size:
        image = image.resize((size, round(size * image.height / image.width)))
    for k in range(count):
        image.save(folder / f"photo{k:05d}.png")
    return folder


def pair_steps_per_second(contents: Path, size: int, batch: int, opts, tmp: Path, devices: int = 1,
                          env: dict | None = None) -> float:
    return run(command(contents, size, batch, opts.steps, tmp / "out", opts, devices), env)[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["batch", "processes", "memory"], nargs="*",
                        default=["batch", "processes", "memory"])
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--pairs", type=int, nargs="+", default=[10, 100, 1000], help="for the memory figures")
    parser.add_argument("--backbone", default="vgg19_bn")
    parser.add_argument("--accelerator", default="cpu")
    parser.add_argument("--steps", type=int, default=6, help="steps per pair in the speed runs")
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        pairs = max(opts.batches)
        contents = copies(tmp / "contents", pairs)
        if "batch" in opts.only:
            print(f"\n{pairs} pairs, {opts.backbone}, {opts.accelerator}: pair-steps/s by batch size")
            print(f"{'size':>6} " + " ".join(f"{'batch ' + str(b):>9}" for b in opts.batches))
            for size in opts.sizes:
                rates = [pair_steps_per_second(contents, size, b, opts, tmp) for b in opts.batches]
                print(f"{size:>6} " + " ".join(f"{rate:>9.2f}" for rate in rates))
        if "processes" in opts.only:
            size, batch, one_thread = opts.sizes[0], 2, {"OMP_NUM_THREADS": "1"}
            print(f"\n{pairs} pairs at {size} px, batches of {batch}, one thread per process")
            base = pair_steps_per_second(contents, size, batch, opts, tmp, 1, one_thread)
            two = pair_steps_per_second(contents, size, batch, opts, tmp, 2, one_thread)
            print(f"1 process: {base:.2f} pair-steps/s; 2 processes: {two:.2f} ({two / base:.2f}x, "
                  f"scaling efficiency {two / base / 2:.2f})")
        if "memory" in opts.only:
            print("\npeak memory against the number of pairs (64 px, batches of 4, 1 step per pair)")
            for count in opts.pairs:
                shutil.rmtree(tmp / "many", ignore_errors=True)
                many = copies(tmp / "many", count, size=64)
                seconds, _, peak = run(command(many, 64, 4, 1, tmp / "out-many", opts))
                print(f"{count:>6} pairs: {peak / 1e9:.2f} GB peak, {seconds:.0f} s")


if __name__ == "__main__":
    main()
