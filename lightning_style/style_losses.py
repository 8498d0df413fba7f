"""Style losses: what a style target holds, how a blend's styles combine, and how an image is compared with it.

``gram`` is the paper's (second moments); ``wasserstein`` fits a Gaussian (mean and covariance) to each layer's
features and takes the Wasserstein-2 distance between the two Gaussians; ``sliced`` compares the whole
distributions along random directions (Heitz et al. 2021). Each is a :class:`StyleLoss`: ``target()`` builds one
region's target from its styles' activations (a blend is the mixture of its styles: every statistic here is
linear in the distribution), ``stack()`` gathers the targets of a batch, and ``__call__`` gives the per-pair loss,
relative to the target's energy and scaled so that ``style_weight 100`` means about the same balance as ``gram``'s.

SCALES: each loss's ``scale`` was chosen so that a run ends as far from the photo's content as ``gram``'s does
(the content distance at relu4_2, the real VGG16, the two example pairs at 128 px, 200 Adam steps: gram 1.00,
wasserstein 1.02 at scale 0.5 (1.22 at 1.6, 0.74 at 0.2), sliced 1.03 at scale 2.4 (0.75 at 0.8)). Matching
the losses' values at the photo instead (wasserstein 1.6) left wasserstein's results further from the photo.
"""

import zlib
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from .losses import (
    covariance,
    gaussian_wasserstein,
    gram_matrix,
    moments,
    position_weights,
    region_masks,
    sliced_wasserstein,
    sqrtm,
    style_loss,
)

StyleLossName = Literal["gram", "wasserstein", "sliced"]


def _by_area(per_region: Tensor, features: Tensor, masks: Tensor | None) -> Tensor:
    """``(B, R)`` region losses -> ``(B,)``: weighted by the share of the image each region covers (as ``gram``)."""
    if masks is None:
        return per_region[:, 0]
    return (region_masks(masks, features.shape[-2:]).mean((-2, -1)) * per_region).sum(1)


class StyleLoss:
    """A style loss: its targets and its per-pair values."""

    scale = 1.0  # multiplies the loss: the same style_weight gives about the same balance for every style loss

    def target(self, activations: Sequence[Tensor], weights: Sequence[float]) -> dict[str, Tensor]:
        """One region's target from its styles' ``(1, C, h, w)`` activations, mixed with ``weights``."""
        raise NotImplementedError

    def stack(self, targets: Sequence[Sequence[dict[str, Tensor]]]) -> dict[str, Tensor]:
        """``targets[pair][region]`` -> ``{key: (B, R, ...)}``."""
        return {key: torch.stack([torch.stack([t[key] for t in pair]) for pair in targets])
                for key in targets[0][0]}

    def __call__(self, features: Tensor, target: dict[str, Tensor], masks: Tensor | None, seed: int = 0) -> Tensor:
        """``(B,)`` losses of ``(B, C, H, W)`` features against ``(B, R, ...)`` targets (``R`` regions of
        ``masks``, or 1); ``seed`` draws the random directions of ``sliced``."""
        raise NotImplementedError


class GramLoss(StyleLoss):
    """The Gram matrix of Gatys et al. (see :func:`~lightning_style.losses.style_loss`)."""

    def target(self, activations: Sequence[Tensor], weights: Sequence[float]) -> dict[str, Tensor]:
        return {"gram": sum(w * gram_matrix(a)[0] for w, a in zip(weights, activations, strict=True))}

    def __call__(self, features: Tensor, target: dict[str, Tensor], masks: Tensor | None, seed: int = 0) -> Tensor:
        gram = target["gram"] if masks is not None else target["gram"][:, 0]
        return style_loss(features, gram, masks)


class WassersteinLoss(StyleLoss):
    """W2 distance between Gaussians fitted to the features, relative to the target's ``E|f|^2``."""

    scale = 0.5  # see SCALES in the module's docstring

    def target(self, activations: Sequence[Tensor], weights: Sequence[float]) -> dict[str, Tensor]:
        stats = [moments(a, position_weights(a)) for a in activations]
        mean = sum(w * m[0, 0] for w, (m, _) in zip(weights, stats, strict=True))
        second = sum(w * s[0, 0] for w, (_, s) in zip(weights, stats, strict=True))
        cov = covariance(mean, second)
        return {"mean": mean, "cov_sqrt": sqrtm(cov), "cov_trace": cov.diagonal().sum(),
                "energy": second.diagonal().sum()}

    def __call__(self, features: Tensor, target: dict[str, Tensor], masks: Tensor | None, seed: int = 0) -> Tensor:
        weights = position_weights(features, masks)
        mean, second = moments(features, weights)
        centered = None
        if features.shape[2] * features.shape[3] < features.shape[1]:  # fewer positions than channels: see
            with torch.autocast(features.device.type, enabled=False):  # gaussian_wasserstein
                f = features.float().flatten(2)[:, None]  # (B, 1, C, N)
                centered = (f - mean[..., None]) * weights[:, :, None].sqrt()
        distance = gaussian_wasserstein(mean, covariance(mean, second), target["mean"], target["cov_sqrt"],
                                        target["cov_trace"], centered=centered)
        return self.scale * _by_area(distance / target["energy"].clamp_min(1e-8), features, masks)


class SlicedLoss(StyleLoss):
    """Sliced W2 distance: the features and the target's samples projected on ``C`` random unit directions,
    sorted and matched, relative to the target's mean squared projection ``E|f|^2 / C``.

    The directions are drawn anew at every step from a generator seeded by ``seed`` (the objective passes the
    global seed, the layer and the step within the batch): they depend neither on the batch's other pairs nor on
    where a run was resumed, and every evaluation within one step (L-BFGS with ``max_iter`` > 1 and its line
    search) sees the same loss.
    """

    scale = 2.4  # see SCALES in the module's docstring

    def target(self, activations: Sequence[Tensor], weights: Sequence[float]) -> dict[str, Tensor]:
        samples = torch.cat([a[0].flatten(1).T.float() for a in activations])  # (M, C)
        share = torch.cat([w * position_weights(a)[0, 0] for a, w in zip(activations, weights, strict=True)])
        share = share / share.sum()
        return {"samples": samples, "weights": share, "energy": (share @ samples.pow(2).sum(1)) / samples.shape[1]}

    def stack(self, targets: Sequence[Sequence[dict[str, Tensor]]]) -> dict[str, Tensor]:
        longest = max(t["samples"].shape[0] for pair in targets for t in pair)
        padded = [[{"samples": F.pad(t["samples"], (0, 0, 0, longest - t["samples"].shape[0])),
                    "weights": F.pad(t["weights"], (0, longest - t["weights"].shape[0])),  # weight 0: padding
                    "energy": t["energy"]} for t in pair] for pair in targets]
        stacked = super().stack(padded)
        alike = (t["samples"].shape[0] == longest and bool((t["weights"] == t["weights"][0]).all())
                 for pair in targets for t in pair)
        if all(alike):
            del stacked["weights"]  # every sample alike: the fast path of sliced_wasserstein
        return stacked

    @staticmethod
    def directions(channels: int, seed: int, device: torch.device) -> Tensor:
        """``(C, C)`` random unit columns, the same for the same ``seed`` on every device."""
        generator = torch.Generator().manual_seed(seed)
        return F.normalize(torch.randn(channels, channels, generator=generator), dim=0).to(device)

    def __call__(self, features: Tensor, target: dict[str, Tensor], masks: Tensor | None, seed: int = 0) -> Tensor:
        directions = self.directions(features.shape[1], seed, features.device)
        with torch.autocast(features.device.type, enabled=False):
            values = torch.einsum("bcn,cp->bpn", features.float().flatten(2), directions)
            target_values = torch.einsum("brmc,cp->brpm", target["samples"], directions)
        weights = None if masks is None else position_weights(features, masks)
        distance = sliced_wasserstein(values, target_values, weights, target.get("weights"))
        return self.scale * _by_area(distance / target["energy"].clamp_min(1e-8), features, masks)


STYLE_LOSSES: dict[str, type[StyleLoss]] = {"gram": GramLoss, "wasserstein": WassersteinLoss, "sliced": SlicedLoss}


def step_seed(seed: int, layer: str, step: int) -> int:
    """A generator seed for a layer's random directions at a batch's ``step``."""
    return (seed * 1_000_003 + zlib.crc32(layer.encode()) * 7919 + step) % 2**63
