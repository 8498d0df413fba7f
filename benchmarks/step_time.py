"""Time one optimisation step of the Lightning run against a plain PyTorch loop doing the same math.

Both use the same frozen VGG (``VGGFeatures``), layers, loss functions, image size and optimiser, in this process,
interleaved so that both see the same machine state. Prints the median step time of each and their ratio, and the
FLOPs of a step (counted by ``torch.utils.flop_counter``) per second of the Lightning step, against the machine's
measured fp32 matrix-multiply rate.

    python benchmarks/step_time.py --sizes 128 256 --steps 30
"""

import argparse
import logging
import statistics
import tempfile
import time
import warnings

import pytorch_lightning as pl
import torch
from torch.utils.flop_counter import FlopCounterMode

from lightning_style import PairDataModule, StyleTransfer
from lightning_style.losses import content_loss, gram_matrix, style_loss

CONTENT, STYLE = "examples/content/chelsea.png", "examples/style/swirls.png"


class StepTimer(pl.Callback):
    def __init__(self) -> None:
        self.times: list[float] = []

    def on_train_batch_end(self, *_) -> None:
        self.times.append(time.perf_counter())


def lightning_steps(backbone: str, size: int, steps: int) -> list[float]:
    pl.seed_everything(0, verbose=False)
    model = StyleTransfer(backbone=backbone, weights=None)
    data = PairDataModule(CONTENT, STYLE, image_size=size, steps=steps)
    timer = StepTimer()
    with tempfile.TemporaryDirectory() as out:
        trainer = pl.Trainer(
            accelerator="cpu", max_steps=steps, default_root_dir=out, enable_progress_bar=False,
            enable_model_summary=False, enable_checkpointing=False, log_every_n_steps=10,
            logger=pl.loggers.CSVLogger(out), callbacks=[timer],
        )
        trainer.fit(model, datamodule=data)
    # consecutive timestamps: timer.times[1:] is one shorter on purpose
    return [b - a for a, b in zip(timer.times, timer.times[1:], strict=False)]


def plain_loop(backbone: str, size: int):
    """The same math without Lightning: targets once, then a ``step()`` that takes an Adam step and clamps."""
    pl.seed_everything(0, verbose=False)
    reference = StyleTransfer(backbone=backbone, weights=None)  # for its features and loss settings only
    features, content_layers, style_layers = reference.features, reference.content_layers, reference.style_layers
    batch = PairDataModule(CONTENT, STYLE, image_size=size).decode([0])
    content, style = batch.contents, batch.styles[0][0][None]
    with torch.no_grad():
        content_targets = features(content)
        style_targets = {layer: gram_matrix(f) for layer, f in features(style).items()}
    image = torch.nn.Parameter(content.clone())
    optimizer = torch.optim.Adam([image], lr=0.02)

    def step() -> None:
        optimizer.zero_grad()
        out = features(image)
        content_term = sum(w * content_loss(out[layer], content_targets[layer]) for layer, w in content_layers.items())
        style_term = sum(w * style_loss(out[layer], style_targets[layer]) for layer, w in style_layers.items())
        loss = (reference.hparams.content_weight * content_term + reference.hparams.style_weight * style_term).sum()
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            image.clamp_(0, 1)

    return step


def plain_steps(backbone: str, size: int, steps: int) -> list[float]:
    step = plain_loop(backbone, size)
    times = [time.perf_counter()]
    for _ in range(steps):
        step()
        times.append(time.perf_counter())
    # consecutive timestamps: times[1:] is one shorter on purpose
    return [b - a for a, b in zip(times, times[1:], strict=False)]


def step_flops(backbone: str, size: int) -> int:
    """Floating-point operations of one step (convolutions and matrix products, forward and backward)."""
    step = plain_loop(backbone, size)
    with FlopCounterMode(display=False) as counter:
        step()
    return counter.get_total_flops()


def matmul_rate(n: int = 2048, repeats: int = 10) -> float:
    """The machine's fp32 matrix-multiply rate in FLOP/s: the best of ``repeats`` n x n products."""
    a, b = torch.rand(n, n), torch.rand(n, n)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * n**3 / best


def _timed(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="vgg19_bn")
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)
    peak = matmul_rate()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, backbone {args.backbone}, Adam, 1 pair; "
          f"fp32 matmul (2048^2): {peak / 1e9:.1f} GFLOP/s")
    print(f"{'size':>6} {'plain ms/step':>14} {'lightning ms/step':>18} {'ratio':>7} {'GFLOP/step':>11} "
          f"{'GFLOP/s':>8} {'of matmul':>10}")
    for size in args.sizes:
        plain, lightning = [], []
        for _ in range(args.repeats):
            plain += plain_steps(args.backbone, size, args.steps)[3:]  # skip warm-up steps
            lightning += lightning_steps(args.backbone, size, args.steps)[3:]
        p, light = statistics.median(plain), statistics.median(lightning)
        flops = step_flops(args.backbone, size)
        rate = flops / light
        print(f"{size:>6} {p * 1e3:>14.1f} {light * 1e3:>18.1f} {light / p:>7.3f} {flops / 1e9:>11.1f} "
              f"{rate / 1e9:>8.1f} {rate / peak:>10.0%}")


if __name__ == "__main__":
    main()
