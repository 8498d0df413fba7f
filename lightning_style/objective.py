"""``StyleObjective``: the loss of Gatys et al. for one batch of pairs, as a plain ``nn.Module``.

Built once per batch from its pixels: the content activations and the style targets (Gram matrices, or what the
chosen style loss needs), keyed by layer and pyramid level; calling it on a batch of images returns per-pair
losses. No Trainer, no files.
"""

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .color import match_colours
from .features import VGGFeatures
from .flow import PreviousFrames
from .losses import content_loss, total_variation
from .style_losses import STYLE_LOSSES, StyleLossName, step_seed


def downsample(images: Tensor, factor: int) -> Tensor:
    """``(..., H, W)`` images shrunk ``factor`` times (bilinear, antialiased); ``factor`` 1 returns them as they are."""
    if factor == 1:
        return images
    h, w = images.shape[-2:]
    batch = images.reshape(-1, *images.shape[-3:])
    small = F.interpolate(batch, size=(round(h / factor), round(w / factor)), mode="bilinear", antialias=True)
    return small.reshape(*images.shape[:-2], *small.shape[-2:])


class StyleObjective(nn.Module):
    """Targets and per-pair losses of one batch of pairs.

    Args:
        features: the frozen VGG (shared, not copied).
        contents: ``(B, 3, H, W)`` content images in ``[0, 1]``.
        styles: for each pair, its style images ``(3, h, w)`` (several for a blend or for masks).
        style_weights: for each pair, one weight per style (a blend's target is the mixture of its styles: its
            Grams are the weighted sum of theirs); default: one style per pair.
        masks: ``(B, R, H, W)`` region masks, one per style, or ``None``.
        content_layers, style_layers: ``{layer: weight}``.
        content_weight, style_weight, tv_weight: alpha, beta and the total-variation weight.
        histogram: match each style's colours to its content's before taking its targets.
        factors: the pyramid's downsampling factors to build targets for (``(1,)`` without a pyramid).
        style_loss: ``gram``, ``wasserstein`` or ``sliced`` (see :mod:`lightning_style.style_losses`).
        seed: seeds the random directions of ``sliced``, with the layer and the step.
        previous: a clip's previous results warped onto its frames, and where to trust them (Ruder et al. 2016):
            the ``temporal`` loss, weighted by ``temporal_weight``, keeps each frame close to them there.

    Calling it with ``(B, 3, H, W)`` images (and the step within the batch) returns ``{name: (B,)}`` losses:
    ``loss``, ``content``, ``style``, ``style/<layer>``, ``tv``, ``temporal``; pair ``i``'s losses depend on image
    ``i`` only.
    The targets are plain tensors made on the contents' device (``content_target``, ``style_target``).
    """

    def __init__(
        self,
        features: VGGFeatures,
        contents: Tensor,
        styles: list[tuple[Tensor, ...]],
        *,
        content_layers: Mapping[str, float],
        style_layers: Mapping[str, float],
        style_weights: list[tuple[float, ...]] | None = None,
        masks: Tensor | None = None,
        content_weight: float = 1.0,
        style_weight: float = 100.0,
        tv_weight: float = 0.0,
        histogram: bool = False,
        factors: tuple[int, ...] = (1,),
        style_loss: StyleLossName = "gram",
        seed: int = 0,
        previous: PreviousFrames | None = None,
        temporal_weight: float = 0.0,
    ) -> None:
        super().__init__()
        self.previous, self.temporal_weight = previous, temporal_weight
        self.features, self.style_loss, self.seed = features, STYLE_LOSSES[style_loss](), seed
        self.content_layers, self.style_layers = dict(content_layers), dict(style_layers)
        self.weights, self.histogram, self.masks = (content_weight, style_weight, tv_weight), histogram, masks
        style_weights = style_weights or [(1.0,)] * len(styles)
        self.content_targets: dict[tuple[str, int], Tensor] = {}  # (layer, factor) -> (B, C, h, w)
        self.style_targets: dict[tuple[str, int], dict[str, Tensor]] = {}  # (layer, factor) -> {key: (B, R, ...)}
        with torch.no_grad():
            for factor in factors:
                activations = features(downsample(contents, factor))
                for layer in self.content_layers:
                    self.content_targets[layer, factor] = activations[layer]
                targets = [self._targets(pair, factor, contents[i], weights)
                           for i, (pair, weights) in enumerate(zip(styles, style_weights, strict=True))]
                for layer in self.style_layers:
                    self.style_targets[layer, factor] = self.style_loss.stack([t[layer] for t in targets])

    def _targets(self, styles: tuple[Tensor, ...], factor: int, content: Tensor,
                 weights: tuple[float, ...]) -> dict[str, list[dict]]:
        """``{layer: [target of each region]}``: with masks, style ``r``'s alone in region ``r``; otherwise one
        target, the mixture of the styles with their weights."""
        activations = []
        for style in styles:
            if self.histogram:
                style = match_colours(style, content)
            activations.append(self.features(downsample(style[None], factor)))
        if self.masks is not None:
            return {layer: [self.style_loss.target([a[layer]], (1.0,)) for a in activations]
                    for layer in self.style_layers}
        return {layer: [self.style_loss.target([a[layer] for a in activations], weights)]
                for layer in self.style_layers}

    def _temporal(self, images: Tensor, factor: int) -> Tensor:
        """Ruder et al.'s temporal loss: the mean over pixels of (image - warped previous result)^2 where the flow
        can be trusted (0 for a pair with no previous frame)."""
        if self.previous is None:
            return images.new_zeros(len(images))
        target, weights = downsample(self.previous.images, factor), downsample(self.previous.weights, factor)
        return (weights * (images.float() - target).square()).mean((1, 2, 3))

    def content_target(self, layer: str, factor: int = 1) -> Tensor:
        """The contents' activations at ``layer`` at the pyramid level ``factor``: ``(B, C, h, w)``."""
        return self.content_targets[layer, factor]

    def style_target(self, layer: str, factor: int = 1) -> dict[str, Tensor]:
        """The style targets of ``layer`` at the pyramid level ``factor``: ``{key: (B, R, ...)}`` (``gram`` for
        the Gram matrices; what the other style losses need under their own keys)."""
        return self.style_targets[layer, factor]

    def forward(self, images: Tensor, factor: int = 1, step: int = 0) -> dict[str, Tensor]:
        """Per-pair losses of ``(B, 3, H, W)`` images at the pyramid level that shrinks them ``factor`` times, at
        the batch's ``step`` (which draws the directions of ``sliced``)."""
        images = downsample(images, factor)
        activations = self.features(images)
        losses = {f"style/{layer}": self.style_loss(activations[layer], self.style_target(layer, factor), self.masks,
                                                    step_seed(self.seed, layer, step))
                  for layer in self.style_layers}
        losses["content"] = sum(weight * content_loss(activations[layer], self.content_target(layer, factor))
                                for layer, weight in self.content_layers.items())
        losses["style"] = sum(weight * losses[f"style/{layer}"] for layer, weight in self.style_layers.items())
        losses["tv"] = total_variation(images)
        losses["temporal"] = self._temporal(images, factor)
        alpha, beta, tv = self.weights
        losses["loss"] = (alpha * losses["content"] + beta * losses["style"] + tv * losses["tv"]
                          + self.temporal_weight * losses["temporal"])
        return losses
