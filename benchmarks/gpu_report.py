"""Everything measured on one CUDA GPU in one command (under 8 minutes on an H200), for the README.

1. the tests marked ``gpu``;
2. 500 steps at 512 px (VGG19-BN, Adam, one pair) with ``32-true``, TF32 (``32-true`` with TF32 matrix
   products) and ``bf16-mixed``: the Lightning run against a plain PyTorch loop doing the same math, in this process;
3. pair-steps/s for batches of 1 to 32 pairs at 512 px with the fastest of those, and the achieved FLOP/s (counted
   by ``torch.utils.flop_counter``) against the GPU's peak;
4. the largest image that fits, with and without activation checkpointing, and memory per megapixel;
5. seconds to a target loss, L-BFGS (``configs/lbfgs.yaml``'s settings) and Adam.

Writes ``report.md`` (tables for the README) and ``report.json`` into ``--out``. ``--smoke`` runs every code path
on the CPU at toy sizes (CI runs it, so this script cannot rot before a GPU is at hand).

    python benchmarks/gpu_report.py --out outputs/gpu_report                  # on the GPU machine
    python benchmarks/gpu_report.py --smoke --out /tmp/gpu_report             # anywhere, under 2 minutes
    python benchmarks/gpu_report.py --weights ~/.cache/torch/hub/checkpoints/hed_vgg16_features.pth --backbone vgg16 ...

Speed does not depend on the weights: without ``--weights`` the VGG is random (the time to a target loss is then
measured on random features, and the report says so).
"""

import argparse
import json
import logging
import platform
import re
import subprocess
import sys
import time
import warnings
from pathlib import Path

import torch
from gpu_timing import PRECISIONS, ROOT, PlainLoop, lightning_seconds_per_step, seconds_per_step, sync
from torch.utils.flop_counter import FlopCounterMode

GPU_TESTS = ROOT / "tests" / "test_gpu.py"  # the GPU lane
# Dense peak FLOP/s by GPU name and precision (vendor data sheets; no sparsity).
PEAKS = {"H200": {"32-true": 67e12, "tf32": 494e12, "bf16-mixed": 989e12},
         "H100": {"32-true": 67e12, "tf32": 494e12, "bf16-mixed": 989e12},
         "A100": {"32-true": 19.5e12, "tf32": 156e12, "bf16-mixed": 312e12}}


class Sizes:
    """What each part runs: the GPU's sizes, or toy ones for ``--smoke``."""

    def __init__(self, smoke: bool) -> None:
        self.image = 32 if smoke else 512
        self.steps = 4 if smoke else 500
        self.sweep_steps = 3 if smoke else 50
        self.batches = [1, 2] if smoke else [1, 2, 4, 8, 16, 32]
        self.sides = [32, 48] if smoke else [1024, 2048, 3072, 4096, 6144, 8192, 12288]
        self.loss_steps = 4 if smoke else 300
        self.warmup = 1 if smoke else 20


def run_gpu_tests() -> dict:
    # Only the GPU lane's file: collecting the whole suite would cost 10 s of imports (a test checks that every
    # test marked gpu lives there).
    command = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-n", "0", str(GPU_TESTS)]  # one GPU: one worker
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    summary = (result.stdout.strip().splitlines() or [""])[-1]
    counts = {word: int(n) for n, word in re.findall(r"(\d+) (passed|failed|skipped|errors?|deselected)", summary)}
    return {"exit": result.returncode, "summary": summary, **counts}


def precisions(args, device, sizes: Sizes) -> list[dict]:
    rows = []
    for name, (_, matmul) in PRECISIONS.items():
        torch.set_float32_matmul_precision(matmul)
        loop = PlainLoop(args, device, name, 1, sizes.image)
        plain = seconds_per_step(loop.step, sizes.steps, sizes.warmup, device)
        lightning = lightning_seconds_per_step(args, device, name, sizes.image, sizes.steps, sizes.warmup)
        rows.append({"precision": name, "plain_ms": plain * 1e3, "lightning_ms": lightning * 1e3,
                     "ratio": lightning / plain, "loss": loop.loss.item()})
        print(f"  {name}: plain {plain * 1e3:.2f} ms/step, Lightning {lightning * 1e3:.2f} ms/step", flush=True)
    torch.set_float32_matmul_precision("high")
    return rows


def sweep(args, device, sizes: Sizes, precision: str) -> list[dict]:
    torch.set_float32_matmul_precision(PRECISIONS[precision][1])
    peak = next((p[precision] for name, p in PEAKS.items() if name in gpu_name(device)), None)
    rows = []
    for pairs in sizes.batches:
        try:
            loop = PlainLoop(args, device, precision, pairs, sizes.image)
            seconds = seconds_per_step(loop.step, sizes.sweep_steps, sizes.warmup, device)
            with FlopCounterMode(display=False) as counter:
                loop.step()
            flops = counter.get_total_flops()
        except (torch.OutOfMemoryError, RuntimeError) as error:  # cuDNN and cuBLAS report some as RuntimeError
            rows.append({"pairs": pairs, "failed": str(error).splitlines()[0][:200]})
            break
        finally:
            loop = None
            empty_cache(device)
        rate = flops / seconds
        rows.append({"pairs": pairs, "pair_steps_per_s": pairs / seconds, "ms_per_step": seconds * 1e3,
                     "tflop_per_s": rate / 1e12, "of_peak": rate / peak if peak else None})
        print(f"  batch {pairs}: {pairs / seconds:.1f} pair-steps/s, {rate / 1e12:.1f} TFLOP/s", flush=True)
    return rows


def peak_bytes(device: torch.device, function) -> int | None:
    """Peak memory ``function`` allocates on the GPU (beyond what was allocated before); None on the CPU."""
    if device.type != "cuda":
        function()
        return None
    empty_cache(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    function()
    sync(device)
    return torch.cuda.max_memory_allocated(device) - before


def empty_cache(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()


def largest(args, device, sizes: Sizes, precision: str) -> dict:
    """The longest side (of the example's 3:2 shape) at which one step fits, and the memory per megapixel of a step
    at the first side; with and without checkpointing."""
    out = {}
    for checkpointing in (False, True):
        fits, per_megapixel = None, None
        for side in sizes.sides:
            try:
                loop = PlainLoop(args, device, precision, 1, side, checkpointing=checkpointing)
                loop.step()  # the first step at a shape also holds cuDNN's benchmark workspaces: measure the second
                used = peak_bytes(device, loop.step)
                if per_megapixel is None and used is not None:
                    per_megapixel = used / 1e9 / (loop.images[0, 0].numel() / 1e6)
                fits = side
            except (torch.OutOfMemoryError, RuntimeError) as error:  # some come as cuDNN/cuBLAS RuntimeErrors
                failure = str(error).splitlines()[0][:200]
                break
            finally:
                loop = None
                empty_cache(device)
        else:
            failure = None
        out["checkpointing" if checkpointing else "plain"] = {
            "largest_side_that_fits": fits, "gb_per_megapixel": per_megapixel,
            "largest_side_tried": sizes.sides[-1], "stopped_by": failure}
        print(f"  checkpointing {checkpointing}: {fits} px fits, {per_megapixel} GB/Mpx", flush=True)
    return out


def time_to_loss(args, device, sizes: Sizes, precision: str) -> list[dict]:
    """Adam for ``loss_steps`` steps sets the target (its final loss); then seconds each optimiser needs to reach it."""
    torch.set_float32_matmul_precision(PRECISIONS[precision][1])
    traces = {}
    for optimizer in ("adam", "lbfgs"):
        loop = PlainLoop(args, device, precision, 1, sizes.image, optimizer=optimizer)
        sync(device)
        trace, start = [], time.perf_counter()
        for _ in range(sizes.loss_steps):
            loop.step()
            sync(device)  # L-BFGS waits for its loss every step anyway: the same clock for both
            trace.append((time.perf_counter() - start, loop.loss))
        traces[optimizer] = [(t, loss.item()) for t, loss in trace]
    target = traces["adam"][-1][1]
    rows = []
    for optimizer, trace in traces.items():
        reached = next(((k + 1, t) for k, (t, loss) in enumerate(trace) if loss <= target), (None, None))
        rows.append({"optimizer": optimizer, "target_loss": target, "steps": reached[0], "seconds": reached[1]})
    return rows


def gpu_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()


def markdown(report: dict) -> str:
    weights = "random weights" if not report["weights"] else "weights " + Path(report["weights"]).name
    smoke = " — SMOKE RUN, toy sizes, not figures" if report["smoke"] else ""
    lines = [f"Measured with `python benchmarks/gpu_report.py` on {report['device']} (torch {report['torch']}, "
             f"{report['backbone']}, {weights}, the example pair at {report['image']} px){smoke}.",
             "", f"GPU tests: {report['tests']['summary']}", "",
             "| precision | plain loop, ms/step | Lightning, ms/step | Lightning / plain |", "|---|---|---|---|"]
    lines += [f"| {r['precision']} | {r['plain_ms']:.2f} | {r['lightning_ms']:.2f} | {r['ratio']:.2f} |"
              for r in report["precisions"]]
    lines += ["", f"Batches ({report['fastest']}):", "",
              "| pairs per batch | pair-steps/s | ms/step | TFLOP/s | of peak |", "|---|---|---|---|---|"]
    for r in report["sweep"]:
        if r.get("failed"):
            lines.append(f"| {r['pairs']} | failed: {r['failed']} | | | |")
        else:
            peak = f"{r['of_peak']:.0%}" if r["of_peak"] else "unknown peak"
            lines.append(f"| {r['pairs']} | {r['pair_steps_per_s']:.1f} | {r['ms_per_step']:.2f} | "
                         f"{r['tflop_per_s']:.1f} | {peak} |")
    lines += ["", "| activation checkpointing | largest side that fits (px, 3:2) | GB per megapixel |", "|---|---|---|"]
    for key, r in report["largest"].items():
        gb = f"{r['gb_per_megapixel']:.2f}" if r["gb_per_megapixel"] is not None else "not measured (no GPU)"
        side = r["largest_side_that_fits"]
        side = f"{side}" + (" (the largest tried)" if side == r["largest_side_tried"] else "")
        lines.append(f"| {key == 'checkpointing'} | {side} | {gb} |")
    lines += ["", "| optimiser | steps to the target loss | seconds |", "|---|---|---|"]
    for r in report["time_to_loss"]:
        seconds = f"{r['seconds']:.2f}" if r["seconds"] is not None else "not reached"
        lines.append(f"| {r['optimizer']} | {r['steps']} | {seconds} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder for report.md and report.json")
    parser.add_argument("--smoke", action="store_true", help="every code path on the CPU at toy sizes")
    parser.add_argument("--backbone", default="vgg19_bn")
    parser.add_argument("--weights", default=None, help="a state_dict path (default: random weights)")
    parser.add_argument("--skip-tests", action="store_true", help="do not run the tests marked gpu")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    if not args.smoke and not torch.cuda.is_available():
        sys.exit("gpu_report: no CUDA GPU here; --smoke runs the report's code on the CPU at toy sizes")
    device = torch.device("cpu" if args.smoke else "cuda")
    torch.backends.cudnn.benchmark = True
    sizes = Sizes(args.smoke)
    started = time.perf_counter()
    report = {"device": gpu_name(device), "torch": torch.__version__, "backbone": args.backbone,
              "weights": args.weights, "image": sizes.image, "smoke": args.smoke}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sections = [
        ("tests", "1. tests marked gpu",
         lambda: {"summary": "not run (--skip-tests)"} if args.skip_tests else run_gpu_tests()),
        ("precisions", "2. precisions", lambda: precisions(args, device, sizes)),
        ("sweep", "3. batches", lambda: sweep(args, device, sizes, fastest(report))),
        ("largest", "4. largest image", lambda: largest(args, device, sizes, fastest(report))),
        ("time_to_loss", "5. time to a target loss", lambda: time_to_loss(args, device, sizes, fastest(report))),
    ]
    for key, title, measure in sections:
        print(title, flush=True)
        report[key] = measure()
        report["seconds"] = time.perf_counter() - started
        (out / "report.json").write_text(json.dumps(report, indent=2))  # after each part: a late failure keeps the rest
    report["fastest"] = fastest(report)
    (out / "report.json").write_text(json.dumps(report, indent=2))
    (out / "report.md").write_text(markdown(report))
    print(markdown(report) + f"\n{report['seconds']:.0f} s; written to {out}/report.md and report.json")


def fastest(report: dict) -> str:
    return min(report["precisions"], key=lambda row: row["plain_ms"])["precision"]


if __name__ == "__main__":
    main()
