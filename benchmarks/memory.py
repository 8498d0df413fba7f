"""Peak memory per megapixel, and the largest image that fits a memory budget.

Each size runs in its own process (peak RSS only grows): build the model, decode the images, compute the targets,
then take ``--steps`` optimisation steps through Lightning. Prints the peak resident memory (CPU) or the peak
CUDA allocation (GPU), the growth per megapixel fitted over the sizes, and the longest side that fits
``--budget_gb`` (square images); ``--verify`` runs that size to check.

    python benchmarks/memory.py --sizes 256 512 1024 --budget_gb 24
    python benchmarks/memory.py --sizes 256 512 1024 --checkpointing   # activation checkpointing
"""

import argparse
import json
import logging
import resource
import subprocess
import sys
import tempfile
import time
import warnings

CONTENT, STYLE = "examples/content/astronaut.png", "examples/style/swirls.png"  # square: N px means N x N


def child(args) -> None:
    """One measurement: prints a JSON line with the megapixels, the peak memory and the seconds per step."""
    import pytorch_lightning as pl
    import torch

    from lightning_style import PairDataModule, StyleTransfer

    warnings.filterwarnings("ignore")
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    model = StyleTransfer(backbone=args.backbone, weights=None, checkpointing=args.checkpointing)
    data = PairDataModule(CONTENT, STYLE, image_size=args.child, steps=args.steps)
    cuda = torch.cuda.is_available()
    times = []
    timer = pl.Callback()
    timer.on_train_batch_end = lambda *_: times.append(time.perf_counter())
    with tempfile.TemporaryDirectory() as out:
        trainer = pl.Trainer(max_steps=args.steps, default_root_dir=out, logger=False, enable_progress_bar=False,
                             enable_model_summary=False, enable_checkpointing=False, precision=args.precision,
                             callbacks=[timer])
        trainer.fit(model, datamodule=data)
    height, width = data.shapes()[0][0]
    megapixels = height * width / 1e6
    peak = torch.cuda.max_memory_allocated() if cuda else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    per_step = (times[-1] - times[0]) / (len(times) - 1)
    print(json.dumps({"megapixels": megapixels, "peak_gb": peak / 1e9, "s_per_step": per_step,
                      "device": torch.cuda.get_device_name() if cuda else "cpu"}))


def measure(args, size: int) -> dict:
    command = [sys.executable, __file__, "--child", str(size), "--steps", str(args.steps), "--backbone", args.backbone,
               "--precision", args.precision] + (["--checkpointing"] if args.checkpointing else [])
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode:
        return {"error": (result.stderr.strip().splitlines() or [f"exit status {result.returncode}"])[-1]}
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024], help="longer sides in pixels")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--backbone", default="vgg19_bn")
    parser.add_argument("--precision", default="32-true")
    parser.add_argument("--checkpointing", action="store_true")
    parser.add_argument("--budget_gb", type=float, default=24.0)
    parser.add_argument("--verify", action="store_true", help="also run the predicted largest size")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)

    rows = [(size, measure(args, size)) for size in args.sizes]
    print(f"{args.backbone}, {args.precision}, checkpointing {'on' if args.checkpointing else 'off'}, square images")
    print(f"{'side':>10}{'megapixels':>12}{'peak GB':>10}{'s/step':>9}  device")
    for size, row in rows:
        if "error" in row:
            print(f"{size:>10}  failed: {row['error']}")
        else:
            print(f"{size:>10}{row['megapixels']:>12.3f}{row['peak_gb']:>10.2f}{row['s_per_step']:>9.2f}  "
                  f"{row['device']}")
    good = [row for _, row in rows if "error" not in row]
    if len(good) < 2:
        return
    # Least-squares line peak = base + slope * megapixels.
    xs, ys = [row["megapixels"] for row in good], [row["peak_gb"] for row in good]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)
    base = my - slope * mx
    largest_mp = (args.budget_gb - base) / slope
    long_side = int((largest_mp * 1e6) ** 0.5)
    print(f"fit: peak = {base:.2f} GB + {slope:.2f} GB per megapixel")
    print(f"largest image in {args.budget_gb:g} GB: {largest_mp:.1f} megapixels, {long_side} x {long_side} px")
    if args.verify:
        row = measure(args, long_side)
        measured = row["error"] if "error" in row else f"peak {row['peak_gb']:.2f} GB, {row['s_per_step']:.1f} s/step"
        print(f"verify {long_side} px: " + measured)


if __name__ == "__main__":
    main()
