"""How much memory a run needs, estimated before any image is decoded, and a refusal of what cannot fit."""

import os
from collections.abc import Sequence

import torch
from torch import nn

from .errors import StyleTransferError
from .features import VGGFeatures

# Measured on the CPU (benchmarks/memory.py, README "Performance"): VGG19-BN up to relu5_1 keeps 2.50 GB per
# megapixel for the backward pass, 1.47 with activation checkpointing. Other layer choices scale with the
# activations the net keeps; a style image's targets are taken without gradients, which keeps about 0.6 GB/Mpx.
GB_PER_MEGAPIXEL = 2.50
CHECKPOINTING_SHARE = 1.47 / 2.50
STYLE_GB_PER_MEGAPIXEL = 0.6
REFERENCE_ACTIVATIONS = 610.0  # _activations_per_pixel of the measured net (VGG19-BN to relu5_1, BatchNorm folded)


def _activations_per_pixel(features: VGGFeatures) -> float:
    """Activation values the net produces per input pixel (each layer's channels at its resolution)."""
    count, channels, area = 0.0, 3, 1.0
    for layer in features.net:
        if isinstance(layer, nn.Conv2d):
            channels = layer.out_channels
        elif isinstance(layer, (nn.MaxPool2d, nn.AvgPool2d)):
            area /= 4
        elif isinstance(layer, nn.Identity):
            continue  # a BatchNorm folded into its conv
        count += channels * area
    return count


def bytes_per_pixel(features: VGGFeatures) -> float:
    """Estimated bytes per pixel of an image being optimised (32-bit activations; mixed precision needs less)."""
    share = CHECKPOINTING_SHARE if features.checkpointing else 1.0
    return GB_PER_MEGAPIXEL * 1e3 * share * _activations_per_pixel(features) / REFERENCE_ACTIVATIONS


def available_bytes(device: torch.device) -> int | None:
    """Free memory where the images will live: the GPU's for CUDA, the machine's otherwise (``None``: unknown)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _style_bytes(styles: Sequence[tuple[int, int]]) -> float:
    return STYLE_GB_PER_MEGAPIXEL * 1e3 * max((h * w for h, w in styles), default=0)


def memory_needed(features: VGGFeatures, images: Sequence[tuple[int, int]],
                  styles: Sequence[tuple[int, int]]) -> float:
    """Estimated bytes a process needs to optimise ``images`` (``(height, width)`` each, at the same time) against
    the largest of ``styles`` (their targets are taken one at a time)."""
    return bytes_per_pixel(features) * sum(h * w for h, w in images) + _style_bytes(styles)


def check_memory(
    features: VGGFeatures,
    images: Sequence[tuple[int, int]],
    styles: Sequence[tuple[int, int]],
    device: torch.device,
    *,
    style_option: str = "--data.style_scale",
) -> None:
    """Refuse, in one line, a run whose images cannot fit in the free memory of ``device``.

    Args:
        features: the frozen VGG of the run.
        images: ``(height, width)`` of each image optimised at the same time by this process.
        styles: ``(height, width)`` of the style images, after resizing (their targets are taken one at a time).
        device: where the run computes.
    """
    free = available_bytes(device)
    if free is None or not images:
        return
    per_pixel = bytes_per_pixel(features)
    image_bytes = per_pixel * sum(h * w for h, w in images)
    style_bytes = _style_bytes(styles)
    need = image_bytes + style_bytes
    if need <= free:
        return
    h, w = max(images, key=lambda size: size[0] * size[1])
    gb = lambda value: f"{value / 1e9:,.0f} GB" if value >= 1e10 else f"{value / 1e9:.1f} GB"
    if style_bytes > image_bytes:
        sh, sw = max(styles, key=lambda size: size[0] * size[1])
        cause, fix = f"a style image of {sw}x{sh} px", style_option
    else:
        cause = f"{len(images)} image(s) of up to {w}x{h} px at {per_pixel / 1e3:.2f} GB per megapixel"
        fix = "--data.image_size" + ("" if features.checkpointing else
                                               ", --model.checkpointing true (about 40% less memory)")
    where = "on the GPU" if device.type == "cuda" else "in memory"
    raise StyleTransferError(f"this run needs about {gb(need)} {where} ({cause}) but {gb(free)} are free; use a "
                             f"smaller {fix}")
