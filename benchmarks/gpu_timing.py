"""Seconds per step on one device: the Lightning run (``StyleTransfer`` under a ``Trainer``) and a plain PyTorch loop
doing the same math in the same process (``benchmarks/gpu_report.py`` compares them)."""

import math
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import pytorch_lightning as pl
import torch

from lightning_style import PairDataModule, StyleObjective, StyleTransfer

ROOT = Path(__file__).resolve().parents[1]
CONTENT, STYLE = str(ROOT / "examples/content/chelsea.png"), str(ROOT / "examples/style/swirls.png")
# name -> (Trainer precision, torch.set_float32_matmul_precision)
PRECISIONS = {"32-true": ("32-true", "highest"), "tf32": ("32-true", "high"), "bf16-mixed": ("bf16-mixed", "high")}
LBFGS = {"lr": 1.0, "max_iter": 1, "history_size": 20, "tolerance_grad": 0.0, "tolerance_change": 0.0}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def batch_of(pairs: int, size: int, device: torch.device):
    """``pairs`` copies of the example pair at ``size`` px: contents ``(B, 3, H, W)`` and styles."""
    one = PairDataModule(CONTENT, STYLE, image_size=size).decode([0])
    return one.contents.repeat(pairs, 1, 1, 1).to(device), [tuple(s.to(device) for s in one.styles[0])] * pairs


class PlainLoop:
    """The module's math without Lightning: the same ``VGGFeatures`` and ``StyleObjective``, Adam (or L-BFGS), and
    the clamp, on ``device``; ``step()`` takes one optimisation step."""

    def __init__(self, args, device, precision: str, pairs: int, size: int, checkpointing=False, optimizer="adam"):
        model = StyleTransfer(backbone=args.backbone, weights=args.weights, checkpointing=checkpointing)
        self.features = model.features.to(device)
        contents, styles = batch_of(pairs, size, device)
        self.objective = StyleObjective(self.features, contents, styles, style_weights=[(1.0,)] * pairs,
                                        content_layers=model.content_layers, style_layers=model.style_layers)
        self.images = torch.nn.Parameter(contents.clone())
        self.optimizer = (torch.optim.Adam([self.images], lr=0.02) if optimizer == "adam"
                          else torch.optim.LBFGS([self.images], **LBFGS))
        self.autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if PRECISIONS[precision][0] == "bf16-mixed"
                         else nullcontext())
        self.loss = torch.zeros((), device=device)

    def closure(self) -> torch.Tensor:
        self.optimizer.zero_grad()
        with self.autocast:
            loss = self.objective(self.images, 1)["loss"].sum()
        loss.backward()
        self.loss = loss.detach()
        return loss

    def step(self) -> None:
        self.optimizer.step(self.closure)
        with torch.no_grad():
            self.images.clamp_(0, 1)


def seconds_per_step(step, steps: int, warmup: int, device: torch.device) -> float:
    for _ in range(warmup):
        step()
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    return (time.perf_counter() - start) / steps


class StepClock(pl.Callback):
    """Wall time of the steps after ``warmup``, the device synchronised at both ends."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.start, self.seconds, self.steps = warmup, None, math.nan, 0

    def on_train_batch_end(self, trainer, pl_module, *_) -> None:
        if trainer.global_step == self.warmup:
            sync(pl_module.device)
            self.start = time.perf_counter()

    def on_train_end(self, trainer, pl_module) -> None:
        sync(pl_module.device)
        self.steps = trainer.global_step - self.warmup
        self.seconds = (time.perf_counter() - self.start) / self.steps


def lightning_seconds_per_step(args, device, precision: str, size: int, steps: int, warmup: int) -> float:
    pl.seed_everything(0, verbose=False)
    model = StyleTransfer(backbone=args.backbone, weights=args.weights)
    data = PairDataModule(CONTENT, STYLE, image_size=size, steps=steps + warmup)
    clock = StepClock(warmup)
    with tempfile.TemporaryDirectory() as out:
        trainer = pl.Trainer(accelerator=device.type, devices=1, precision=PRECISIONS[precision][0], max_epochs=-1,
                             logger=False, enable_checkpointing=False, enable_progress_bar=False, benchmark=True,
                             default_root_dir=out, callbacks=[clock])
        trainer.fit(model, datamodule=data)
    return clock.seconds
