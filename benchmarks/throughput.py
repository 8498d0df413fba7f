"""Pair-steps per second of ``lightning-style fit`` with 1 and with W processes (DDP), on the same pairs.

Each configuration runs the console script twice, for S1 and S2 steps, and divides the extra pair-steps by the
extra time, so start-up (imports, process launch, targets) is left out. Speed-up is against the first device
count given; efficiency is speed-up per device (on a CPU the processes share its cores, so 1.0 total is the ideal).

    python benchmarks/throughput.py --pairs 4 --size 128 --devices 1 2 --accelerator cpu
"""

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PHOTO, STYLE = Path("examples/content/chelsea.png"), "examples/style/swirls.png"


def seconds(contents: Path, devices: int, steps: int, args: argparse.Namespace, out: Path) -> float:
    """Wall time of one ``lightning-style fit`` run."""
    command = [
        str(Path(sys.executable).with_name("lightning-style")), "fit", "--config", "configs/default.yaml",
        "--model.weights", "null", "--model.backbone", args.backbone, "--data.content", str(contents),
        "--data.style", STYLE, "--data.image_size", str(args.size), "--trainer.max_steps", str(steps),
        "--trainer.accelerator", args.accelerator, "--trainer.devices", str(devices),
        "--trainer.strategy", "ddp" if devices > 1 else "auto", "--trainer.enable_progress_bar", "false",
        "--trainer.logger", "false", "--trainer.enable_checkpointing", "false", "--trainer.callbacks", "[]",
        "--images.every_n_steps", "0", "--output.dir", str(out), "--trainer.default_root_dir", str(out),
    ]
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=4)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--backbone", default="vgg19_bn")
    parser.add_argument("--accelerator", default="cpu")
    parser.add_argument("--devices", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--steps", type=int, nargs=2, default=[5, 25])
    args = parser.parse_args()
    print(f"{args.pairs} pairs at {args.size} px, {args.backbone}, {args.accelerator}, steps {args.steps[0]} and {args.steps[1]}")
    print(f"{'devices':>8} {'s/step':>8} {'pair-steps/s':>13} {'speed-up':>9} {'efficiency':>11}")
    with tempfile.TemporaryDirectory() as tmp:
        contents = Path(tmp) / "contents"
        contents.mkdir()
        for k in range(args.pairs):  # copies of one photo: same-shaped pairs, one batch per process
            shutil.copy(PHOTO, contents / f"pair{k}{PHOTO.suffix}")
        base = None
        for devices in args.devices:
            short, long = (seconds(contents, devices, steps, args, Path(tmp) / "out") for steps in args.steps)
            per_step = (long - short) / (args.steps[1] - args.steps[0])
            rate = args.pairs / per_step
            base = base or rate
            print(f"{devices:>8} {per_step:>8.3f} {rate:>13.2f} {rate / base:>9.2f} {rate / base / devices:>11.2f}")


if __name__ == "__main__":
    main()
