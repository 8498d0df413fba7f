"""Shards against one run and against DDP on this machine, and what a straggler costs each: whole jobs through the
console script, timed from start to the last result (start-up included, as a user waits for it).

    python benchmarks/shards.py                      # 16 pairs at 128 px, 30 steps, batches of 2
    python benchmarks/shards.py --pairs 32 --steps 50

Runs: one process with 2 threads; two shards (``--data.shard 0|1 --data.shards 2``) side by side with 1 thread
each; DDP on 2 processes with 1 thread each; then DDP and the two shards again with one process (rank 1, shard 1)
slowed 2x (``timed_fit.Straggler``: it sleeps after each step as long as the step took); then 4 shards through 2
slots, one of them slowed 2x, each slot taking the next shard when it is free (as ``sbatch --array=0-3%2`` does).

"pairs/s" is the job's pairs over its time; "busy" adds each process's pairs over its own time: the rate while
every process has work (a queue of shards keeps them busy; a lone shard that finished early idles).
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from throughput import ROOT, command, copies

from lightning_style.shards import shard_of


def launch(args: list[str], threads: int, slow: bool = False, rank: int = 1) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "benchmarks"), "OMP_NUM_THREADS": str(threads)}
    if slow:
        env |= {"STRAGGLER_FACTOR": "2", "STRAGGLER_RANK": str(rank)}
    return subprocess.Popen([sys.executable, str(ROOT / "benchmarks" / "timed_fit.py"), "fit", *args,
                             "--trainer.callbacks+=timed_fit.Straggler"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(processes: list[subprocess.Popen], start: float) -> list[float]:
    """Each process's wall time from ``start`` to its exit."""
    ends = [0.0] * len(processes)
    while not all(ends):
        for k, process in enumerate(processes):
            if not ends[k] and process.poll() is not None:
                ends[k] = time.perf_counter() - start
                if process.returncode:
                    raise SystemExit(process.stdout.read()[-3000:])
        time.sleep(0.05)
    return ends


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=16)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--backbone", default="vgg16")
    parser.add_argument("--accelerator", default="cpu")
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        contents = copies(tmp / "contents", opts.pairs)
        split = [sum(shard_of(f"{path.stem}__swirls", 2) == k for path in contents.iterdir()) for k in (0, 1)]
        print(f"{opts.pairs} pairs at {opts.size} px, {opts.steps} steps, batches of {opts.batch}, {opts.backbone}; "
              f"shards of {split[0]} and {split[1]} pairs (by name)")

        def args(name: str, *extra: str, devices: int = 1) -> list[str]:
            return [*command(contents, opts.size, opts.batch, opts.steps, tmp / name, opts, devices), *extra]

        def job(label: str, runs: list[tuple[list[str], int, bool, int]], pairs: list[int]) -> None:
            start = time.perf_counter()
            ends = finish([launch(a, threads, slow, rank) for a, threads, slow, rank in runs], start)
            parts = ", ".join(f"{end:.1f} s" for end in ends)
            busy = sum(count / end for count, end in zip(pairs, ends, strict=True))
            print(f"{label:<38} {max(ends):6.1f} s  {opts.pairs / max(ends):5.3f} pairs/s  busy {busy:5.3f}  "
                  f"(each process: {parts})")

        def queue(label: str, count: int) -> None:
            """``count`` shards through 2 slots, slot 1 slowed 2x: each slot starts the next shard when free."""
            start, waiting, slots = time.perf_counter(), list(range(count)), [None, None]
            done = [[], []]
            while waiting or any(slots):
                for k in (0, 1):
                    if slots[k] is not None and slots[k].poll() is not None:
                        if slots[k].returncode:
                            raise SystemExit(slots[k].stdout.read()[-3000:])
                        slots[k] = None
                    if slots[k] is None and waiting:
                        shard = waiting.pop(0)
                        done[k].append(shard)
                        slots[k] = launch(args(f"queue-{shard}", "--data.shard", str(shard), "--data.shards",
                                               str(count)), 1, slow=k == 1, rank=0)
                time.sleep(0.05)
            seconds = time.perf_counter() - start
            print(f"{label:<38} {seconds:6.1f} s  {opts.pairs / seconds:5.3f} pairs/s  (shards by slot: {done[0]} | "
                  f"{done[1]} (slowed))")

        shards = [args(f"shards-{k}", "--data.shard", str(k), "--data.shards", "2") for k in (0, 1)]
        job("1 run x 2 threads", [(args("one"), 2, False, 0)], [opts.pairs])
        job("2 shards x 1 thread, side by side", [(shards[0], 1, False, 0), (shards[1], 1, False, 0)], split)
        job("DDP, 2 processes x 1 thread", [(args("ddp", devices=2), 1, False, 0)], [opts.pairs])
        shards = [args(f"slow-shards-{k}", "--data.shard", str(k), "--data.shards", "2") for k in (0, 1)]
        job("DDP, rank 1 slowed 2x", [(args("slow-ddp", devices=2), 1, True, 1)], [opts.pairs])
        job("2 shards, shard 1 slowed 2x", [(shards[0], 1, False, 0), (shards[1], 1, True, 0)], split)
        queue("4 shards through 2 slots, 1 slowed 2x", 4)


if __name__ == "__main__":
    main()
