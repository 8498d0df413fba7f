"""Colour preservation compared: ``none``, ``luminance`` and ``histogram`` (and ``histogram`` at lower style
weights) on the example pair, with the real pretrained VGG16 (``lightning_style.offline_weights``).

For each result it prints the luminance contrast (standard deviation of Y, relative to the photo's), the
structure kept (SSIM of the luminance against the photo's), and the colour distance to the photo (mean distance
of the I, Q chroma from the photo's, per pixel), and writes a side-by-side panel.

    python benchmarks/preserve_color.py --size 128 --steps 60 --out outputs/preserve_color_128.png
    python benchmarks/preserve_color.py --size 256 --steps 200 --histogram_weights --out outputs/preserve_color_256.png
"""

import argparse
import logging
import tempfile
import warnings
from pathlib import Path

import pytorch_lightning as pl
import torch
from torchmetrics.functional.image import structural_similarity_index_measure as ssim

from lightning_style import PairDataModule, StyleTransfer
from lightning_style.callbacks import side_by_side, to_pil
from lightning_style.color import to_yiq
from lightning_style.offline_weights import default_path, fetch_hed_vgg16

CONTENT, STYLE = "examples/content/chelsea.png", "examples/style/swirls.png"


def stylise(preserve_color: str, style_weight: float, size: int, steps: int,
            weights: str) -> tuple[torch.Tensor, torch.Tensor]:
    pl.seed_everything(0, verbose=False)
    model = StyleTransfer(backbone="vgg16", weights=weights, style_weight=style_weight,
                          preserve_color=preserve_color)
    data = PairDataModule(CONTENT, STYLE, image_size=size, steps=steps)
    with tempfile.TemporaryDirectory() as out:
        trainer = pl.Trainer(accelerator="cpu", max_epochs=-1, logger=False, enable_checkpointing=False,
                             enable_progress_bar=False, default_root_dir=out)
        trainer.fit(model, datamodule=data)
    (pair,) = model.result
    return pair.image, pair.content


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--out", default="outputs/preserve_color.png")
    parser.add_argument("--histogram_weights", type=float, nargs="*", default=[30.0, 10.0],
                        help="further histogram runs at these style weights")
    args = parser.parse_args()
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    weights = str(fetch_hed_vgg16(default_path()))
    print(f"chelsea x swirls, {args.size} px, {args.steps} Adam steps, VGG16 (offline pretrained weights)\n")
    print("| preserve_color | style_weight | contrast (std Y / photo's) | structure (SSIM of Y vs photo) "
          "| colour distance to photo (IQ) |")
    print("|---|---|---|---|---|")
    panel = []
    runs = [("none", 100.0), ("luminance", 100.0), ("histogram", 100.0)]
    for preserve_color, style_weight in runs + [("histogram", weight) for weight in args.histogram_weights]:
        result, content = stylise(preserve_color, style_weight, args.size, args.steps, weights)
        y, y_photo = to_yiq(result), to_yiq(content)
        contrast = (y[0].std() / y_photo[0].std()).item()
        structure = ssim(y[:1][None], y_photo[:1][None], data_range=1.0).item()
        colour = (y[1:] - y_photo[1:]).norm(dim=0).mean().item()
        print(f"| {preserve_color} | {style_weight:g} | {contrast:.2f} | {structure:.3f} | {colour:.3f} |", flush=True)
        panel.append(result)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    to_pil(side_by_side(content, *panel)).save(args.out)
    print(f"\npanel (photo, then the runs in order): {args.out}")


if __name__ == "__main__":
    main()
