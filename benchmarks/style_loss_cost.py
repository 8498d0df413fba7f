"""What a step costs with each style loss: forward and backward of ``StyleObjective`` on one image, per size.

Same VGG, layers, image and targets for the three losses, interleaved step by step so that all see the same
machine state; prints the median milliseconds per step and the ratio to ``gram``.

    python benchmarks/style_loss_cost.py --sizes 256 512 --steps 10
"""

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from lightning_style.features import VGGFeatures
from lightning_style.images import load_image
from lightning_style.objective import StyleObjective
from lightning_style.style_losses import STYLE_LOSSES

CONTENT, STYLE = "examples/content/chelsea.png", "examples/style/swirls.png"
LAYERS = {"relu1_1": 0.2, "relu2_1": 0.2, "relu3_1": 0.2, "relu4_1": 0.2, "relu5_1": 0.2}


def resized(path: str, size: int) -> torch.Tensor:
    image = load_image(path, role="image")
    return F.interpolate(image[None], scale_factor=size / max(image.shape[1:]), mode="bilinear", antialias=True)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="vgg16")
    parser.add_argument("--sizes", type=int, nargs="+", default=[256])
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    # speed does not depend on the weights
    features = VGGFeatures(["relu4_2", *LAYERS], backbone=args.backbone, weights=None)
    print(f"{args.backbone}, {torch.get_num_threads()} threads; ms per step (forward + backward), "
          f"median of {args.steps}")
    ratios = " | ".join(f"{name} / gram" for name in list(STYLE_LOSSES)[1:])
    print("| size | " + " | ".join(STYLE_LOSSES) + " | " + ratios + " |")
    print("|---" * (2 * len(STYLE_LOSSES)) + "|")
    for size in args.sizes:
        content, style = resized(CONTENT, size), resized(STYLE, size)
        objectives = {name: StyleObjective(features, content[None], [(style,)], content_layers={"relu4_2": 1.0},
                                           style_layers=LAYERS, style_loss=name) for name in STYLE_LOSSES}
        times = {name: [] for name in STYLE_LOSSES}
        for step in range(args.steps + 1):
            for name, objective in objectives.items():
                image = content[None].clone().requires_grad_()
                start = time.perf_counter()
                objective(image, step=step)["loss"].sum().backward()
                if step:  # the first step of each warms up
                    times[name].append(1000 * (time.perf_counter() - start))
        ms = {name: statistics.median(t) for name, t in times.items()}
        shape = "x".join(map(str, content.shape[:0:-1]))
        print(f"| {shape} | " + " | ".join(f"{ms[n]:.0f}" for n in STYLE_LOSSES) + " | "
              + " | ".join(f"{ms[n] / ms['gram']:.2f}" for n in list(STYLE_LOSSES)[1:]) + " |", flush=True)


if __name__ == "__main__":
    main()
