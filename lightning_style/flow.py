"""How a clip's frame follows the one before: the optical flow between two frames (OpenCV's DIS, Kroeger et al.
2016, which needs no learned weights), warping along it, the link from a frame to the previous frame's result
(``FrameLink``), that result warped onto the frame (``previous_frames``, for Ruder et al.'s warm start and
temporal loss), and how much stylised frames flicker (``warping_error``)."""

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .images import load_image

MIN_FLOW_SIDE = 12  # OpenCV's DIS refuses smaller frames


def _grey(image: Tensor) -> np.ndarray:
    pixels = (image.clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(1, 2, 0).numpy()
    return cv2.cvtColor(np.ascontiguousarray(pixels), cv2.COLOR_RGB2GRAY)


def warp(images: Tensor, flow: Tensor, mode: str = "bilinear") -> Tensor:
    """Sample ``(..., C, H, W)`` images at each pixel plus its ``(..., H, W, 2)`` flow (x, y offsets in pixels),
    ``bilinear`` or ``bicubic``: the previous frame brought to the current one when ``flow`` points from the
    current frame into the previous."""
    batch = images.reshape(-1, *images.shape[-3:])
    flow = flow.reshape(-1, *flow.shape[-3:]).to(batch)
    height, width = batch.shape[-2:]
    ys, xs = torch.meshgrid(torch.arange(height, device=batch.device), torch.arange(width, device=batch.device),
                            indexing="ij")
    x = (xs + flow[..., 0]) * (2 / max(width - 1, 1)) - 1
    y = (ys + flow[..., 1]) * (2 / max(height - 1, 1)) - 1
    warped = F.grid_sample(batch, torch.stack([x, y], -1), mode=mode, padding_mode="border", align_corners=True)
    return warped.reshape(images.shape)


def flow_between(previous: Tensor, current: Tensor) -> tuple[Tensor, Tensor]:
    """The flow from ``current`` into ``previous`` (two ``(3, H, W)`` frames) and where it can be trusted.

    Returns:
        ``(H, W, 2)`` pixel offsets (``warp(previous_result, flow)`` brings a result of the previous frame onto this
        one) and ``(1, H, W)`` weights: 0 where the forward and backward flows disagree (occlusions, motion
        boundaries; the test of Sundaram et al. 2010 that Ruder et al. use) and where the flow points out of the
        previous frame (what a pan brings in at an edge), else 1.
    """
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    a, b = _grey(previous), _grey(current)
    backward = torch.from_numpy(dis.calc(b, a, None))
    forward = torch.from_numpy(dis.calc(a, b, None))
    forward_there = warp(forward.permute(2, 0, 1), backward).permute(1, 2, 0)
    mismatch = (backward + forward_there).square().sum(-1)
    scale = backward.square().sum(-1) + forward_there.square().sum(-1)
    height, width = backward.shape[:2]
    ys, xs = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    x, y = xs + backward[..., 0], ys + backward[..., 1]
    inside = (x >= 0) & (x <= width - 1) & (y >= 0) & (y <= height - 1)  # not what enters at an edge (a pan)
    reliable = ((mismatch <= 0.01 * scale + 0.5) & inside).float()
    return backward, reliable[None]


def warping_error(frames: list[Tensor], contents: list[Tensor]) -> float:
    """How much stylised ``frames`` flicker: the mean squared difference between each frame and the one before it
    warped by the flow of their ``contents``, over the pixels where the flow can be trusted (0-1 scale)."""
    errors, weights = 0.0, 0.0
    for t in range(1, len(frames)):
        flow, reliable = flow_between(contents[t - 1], contents[t])
        difference = (frames[t] - warp(frames[t - 1], flow)).square().mean(0, keepdim=True)
        errors += float((reliable * difference).sum())
        weights += float(reliable.sum())
    return errors / max(weights, 1.0)


@dataclass  # not frozen: Lightning moves its tensors to the device with the batch
class FrameLink:
    """How a clip's frame follows the one before: the file of the previous frame's result (read when this frame's
    batch starts, by which time it was written), the ``(H, W, 2)`` flow from this frame into the previous one and
    its ``(1, H, W)`` reliability (see :func:`flow_between`)."""

    previous: Path
    flow: Tensor
    reliable: Tensor


@dataclass(frozen=True)
class PreviousFrames:
    """A batch's previous results warped onto its frames: ``images`` ``(B, 3, H, W)``, ``weights`` ``(B, 1, H, W)``
    (0 where the flow cannot be trusted, and for every pixel of a pair with no previous frame), ``linked`` ``(B,)``."""

    images: Tensor
    weights: Tensor
    linked: Tensor


def previous_frames(links: Sequence[FrameLink | None], contents: Tensor) -> PreviousFrames | None:
    """Read and warp the previous results of a batch's frames (``None`` when none of its pairs has one). A previous
    result that is not on disk (its frame could not be decoded) leaves its pair to start on its own, with a warning."""
    if not any(links):
        return None
    images, weights = contents.clone(), torch.zeros_like(contents[:, :1])
    linked = torch.zeros(len(contents), dtype=torch.bool)
    for row, link in enumerate(links):
        if link is None:
            continue
        if not link.previous.is_file():
            warnings.warn(f"{link.previous} is missing: the next frame starts on its own", stacklevel=1)
            continue
        previous = load_image(link.previous, role="previous frame").to(contents)
        # Bicubic: bilinear warps, one per frame, blur a clip more and more (measured on a 12-frame pan at 128 px:
        # the last frame's edges 17% weaker than the first's, against 3% with bicubic).
        images[row] = warp(previous, link.flow.to(contents), "bicubic").clamp(0, 1)
        weights[row] = link.reliable.to(contents)
        linked[row] = True
    return PreviousFrames(images, weights, linked.to(contents.device))
