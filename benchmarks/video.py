"""Clips: seconds per frame and flicker (warping error) of frames stylised each from the one before (the default,
``temporal_weight`` 1000) and each on its own (``temporal_weight`` 0), with the same steps, and of a still.

The clip is a slow pan across the example photo (``examples/content/chelsea.png``, a 4 px step a frame at the
photo's scale), made here with PyAV; the style is ``examples/style/swirls.png``; the real pretrained VGG16
(``lightning_style.offline_weights``). The warping error is the mean squared difference, over the pixels where
the flow can be trusted, between each stylised frame and the previous one warped by the flow of the clip's frames
(``lightning_style.flow.warping_error``). ``--gif`` writes the first size's frames side by side (on its own |
one from the one before) as an animated GIF.

    python benchmarks/video.py --sizes 128 256 --frames 16 8 --steps 40 --gif examples/video.gif
"""

import argparse
import logging
import tempfile
import time
import warnings
from pathlib import Path

import av
import numpy as np
import pytorch_lightning as pl
import torch
from PIL import Image

from lightning_style import PairDataModule, StyleTransfer
from lightning_style.callbacks import ImageWriter, side_by_side, to_pil
from lightning_style.flow import warping_error
from lightning_style.images import load_image
from lightning_style.offline_weights import default_path, fetch_hed_vgg16
from lightning_style.video import read_frames

PHOTO, STYLE = "examples/content/chelsea.png", "examples/style/swirls.png"


def pan_clip(path: Path, frames: int) -> Path:
    """A pan from left to right across the example photo: a 300x200 window, 4 px further each frame, 12 fps."""
    photo = np.asarray(Image.open(PHOTO).convert("RGB"))
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=12, options={"crf": "12"})
        stream.width, stream.height, stream.pix_fmt = 300, 200, "yuv420p"
        for t in range(frames):
            window = np.ascontiguousarray(photo[40:240, 20 + 4 * t:320 + 4 * t])
            container.mux(stream.encode(av.VideoFrame.from_ndarray(window, format="rgb24")))
        container.mux(stream.encode(None))
    return path


def stylise(content: Path, out: Path, size: int, steps: int, weights: str, temporal_weight: float) -> float:
    """Run one fit; returns its seconds."""
    pl.seed_everything(0, verbose=False)
    model = StyleTransfer(backbone="vgg16", weights=weights, temporal_weight=temporal_weight)
    data = PairDataModule(str(content), STYLE, image_size=size, steps=steps)
    trainer = pl.Trainer(accelerator="cpu", max_epochs=-1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=out,
                         callbacks=[ImageWriter(str(out))])
    start = time.perf_counter()
    trainer.fit(model, datamodule=data)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--frames", type=int, nargs="+", default=[16, 8], help="frames of the clip at each size")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--gif", default=None, help="write the first size's frames side by side here")
    args = parser.parse_args()
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    weights = str(fetch_hed_vgg16(default_path()))
    print(f"pan across chelsea.png x swirls, {args.steps} Adam steps a frame, VGG16 (offline pretrained weights), "
          f"{torch.get_num_threads()} threads\n")
    print("| size | frames | still: s | on its own: s/frame | warping error | from the one before: s/frame "
          "| warping error | flicker ratio |")
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        for k, (size, count) in enumerate(zip(args.sizes, args.frames, strict=True)):
            clip = pan_clip(root / f"pan{size}.mp4", count)
            first = (read_frames(clip)[0] * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
            Image.fromarray(first).save(root / f"still{size}.png")
            still = stylise(root / f"still{size}.png", root / f"s{size}", size, args.steps, weights, 1000.0)
            runs, seconds = {}, {}
            for name, weight in (("alone", 0.0), ("linked", 1000.0)):
                seconds[name] = stylise(clip, root / f"{name}{size}", size, args.steps, weights, weight) / count
                runs[name] = [load_image(path) for path in sorted((root / f"{name}{size}").glob("*/frame-*.png"))]
            data = PairDataModule(str(clip), STYLE, image_size=size)  # the clip's frames as the runs had them
            contents = [data.files.clips.frame(clip, t, data.files.shapes[t], 0) for t in range(count)]
            errors = {name: warping_error(frames, contents) for name, frames in runs.items()}
            print(f"| {size} px | {count} | {still:.1f} | {seconds['alone']:.1f} | {errors['alone']:.5f} | "
                  f"{seconds['linked']:.1f} | {errors['linked']:.5f} | {errors['alone'] / errors['linked']:.1f}x |",
                  flush=True)
            if args.gif and k == 0:
                panels = [to_pil(side_by_side(a, b)) for a, b in zip(runs["alone"], runs["linked"], strict=True)]
                panels[0].save(args.gif, save_all=True, append_images=panels[1:], duration=1000 // 12, loop=0)
                print(f"  wrote {args.gif}: on its own | from the one before")


if __name__ == "__main__":
    main()
