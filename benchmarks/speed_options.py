"""Measure each speed option of ``StyleTransfer`` before it becomes a default: median seconds per step.

Every variant is a Lightning run of the same pair at ``--size`` (VGG19-BN, random weights, Adam); the first
``--warmup`` steps (``torch.compile`` compiles there) are left out. Also times the VGG with its BatchNorm layers
as torchvision has them against the folded ones the package uses, in a plain loop in a fresh process each, with
the peak memory it adds. On a GPU it adds cudnn benchmark mode (``--trainer.benchmark true``) and bf16-mixed.

    python benchmarks/speed_options.py --size 256 --steps 15
"""

import argparse
import json
import logging
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings

import pytorch_lightning as pl
import torch
import torchvision

from lightning_style import PairDataModule, StyleTransfer
from lightning_style.features import IMAGENET_MEAN, IMAGENET_STD, VGGFeatures, layer_names
from lightning_style.losses import gram_matrix

CONTENT, STYLE = "examples/content/chelsea.png", "examples/style/swirls.png"
LAYERS = ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu4_2", "relu5_1"]


def lightning_step_time(size: int, steps: int, warmup: int, trainer_kwargs: dict, **model_kwargs) -> float:
    pl.seed_everything(0, verbose=False)
    model = StyleTransfer(weights=None, **model_kwargs)
    times = []
    timer = pl.Callback()
    timer.on_train_batch_end = lambda *_: times.append(time.perf_counter())
    with tempfile.TemporaryDirectory() as out:
        trainer = pl.Trainer(max_steps=steps, default_root_dir=out, logger=False, enable_progress_bar=False,
                             enable_model_summary=False, enable_checkpointing=False, callbacks=[timer],
                             **trainer_kwargs)
        trainer.fit(model, datamodule=PairDataModule(CONTENT, STYLE, image_size=size, steps=steps))
    # consecutive timestamps: times[1:] is one shorter on purpose
    return statistics.median(b - a for a, b in list(zip(times, times[1:], strict=False))[warmup:])


def plain_step_time(net, images: torch.Tensor, steps: int) -> float:
    """Forward to the paper's layers, Gram losses, backward to the image: the VGG's share of a step."""
    def step():
        x = images.detach().requires_grad_()
        out = net(x)
        sum(gram_matrix(value).square().mean() for value in out.values()).backward()

    step()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


class TorchvisionVGG(torch.nn.Module):
    """torchvision's vgg19_bn ``features`` as they are (BatchNorm not folded), tapped at the same layers."""

    def __init__(self) -> None:
        super().__init__()
        self.net = torchvision.models.vgg19_bn().features[:43].eval().requires_grad_(False)
        self.names = layer_names(self.net)
        for i, name in enumerate(self.names):
            if name.startswith("relu"):
                self.net[i] = torch.nn.ReLU(inplace=self.names[i - 1] not in LAYERS)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def forward(self, images):
        x, out = (images - self.mean) / self.std, {}
        for name, layer in zip(self.names, self.net, strict=True):
            x = layer(x)
            if name in LAYERS:
                out[name] = x
        return out


def vgg_child(kind: str, size: int, steps: int) -> None:
    """Prints the seconds per plain step and the peak memory that the steps add, as JSON."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    net = (TorchvisionVGG() if kind == "torchvision"
           else VGGFeatures(LAYERS, backbone="vgg19_bn", weights=None)).to(device)
    images = torch.rand(1, 3, size * 2 // 3, size, device=device)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    seconds = plain_step_time(net, images, steps)
    peak = (torch.cuda.max_memory_allocated() if device == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before)
    print(json.dumps({"s_per_step": seconds, "added_gb": peak / 1e9}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--vgg_child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.vgg_child:
        return vgg_child(args.vgg_child, args.size, args.steps)
    warnings.filterwarnings("ignore")
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    cuda = torch.cuda.is_available()
    device = torch.cuda.get_device_name() if cuda else f"CPU, {torch.get_num_threads()} threads"
    print(f"vgg19_bn, {args.size} px (chelsea, 3:2), {device}, torch {torch.__version__}")

    vgg = {}
    for kind in ("torchvision", "folded"):
        command = [sys.executable, __file__, "--vgg_child", kind, "--size", str(args.size), "--steps", str(args.steps)]
        child = subprocess.run(command, capture_output=True, text=True, check=True)
        vgg[kind] = json.loads(child.stdout.splitlines()[-1])
    for kind, label in (("torchvision", "BatchNorm as in torchvision"), ("folded", "BatchNorm folded (default)")):
        row = vgg[kind]
        print(f"plain loop, {label:<28}{row['s_per_step']:.3f} s/step  "
              f"{row['s_per_step'] / vgg['torchvision']['s_per_step']:.2f}x  peak +{row['added_gb']:.2f} GB")

    variants = {"default": ({}, {}), "channels_last": ({}, {"channels_last": True}),
                "compile": ({}, {"compile": True}), "checkpointing": ({}, {"checkpointing": True})}
    if cuda:
        variants |= {"cudnn benchmark": ({"benchmark": True}, {}), "bf16-mixed": ({"precision": "bf16-mixed"}, {}),
                     "bf16-mixed + channels_last": ({"precision": "bf16-mixed"}, {"channels_last": True})}
    base = None
    for name, (trainer_kwargs, model_kwargs) in variants.items():
        seconds = lightning_step_time(args.size, args.steps, args.warmup, trainer_kwargs, **model_kwargs)
        base = base or seconds
        print(f"{name:<28}{seconds:.3f} s/step  {seconds / base:.2f}x")


if __name__ == "__main__":
    main()
