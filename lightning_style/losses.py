"""Loss functions of Gatys et al., as pure functions with one value per pair.

Every function takes batches of shape ``(B, ...)`` and returns a tensor of shape ``(B,)``: pair ``i``'s loss
depends only on pair ``i``'s tensors. Grams and losses are computed in float32 even under autocast, because a
Gram matrix of fp16 activations overflows.
"""

import torch
import torch.nn.functional as F
from torch import Tensor


def gram_matrix(features: Tensor, masks: Tensor | None = None) -> Tensor:
    """Gram matrix of feature maps, averaged over positions (or over the regions of ``masks``).

    Args:
        features: ``(B, C, H, W)`` activations.
        masks: optional ``(B, R, h, w)`` region masks in ``[0, 1]``, any size (average-pooled to ``H x W``).

    Returns:
        ``(B, C, C)`` float32 tensor ``F F^T / (H W)`` with ``F`` the ``(C, H W)`` matrix of each pair.
        Dividing by ``H W`` (the paper uses raw sums) makes Grams of different image sizes comparable.
        With masks, ``(B, R, C, C)``: region ``r``'s Gram ``(F m_r) (F m_r)^T / sum(m_r^2)``, the guided Gram
        of Gatys et al. 2017 normalised to a mean over the region.

    >>> gram_matrix(torch.ones(1, 2, 3, 3))
    tensor([[[1., 1.],
             [1., 1.]]])
    """
    b, c, h, w = features.shape
    with torch.autocast(features.device.type, enabled=False):
        f = features.float().reshape(b, c, h * w)
        if masks is None:
            return torch.bmm(f, f.transpose(1, 2)) / (h * w)
        m2 = region_masks(masks, (h, w)).pow(2).flatten(2)  # (B, R, HW)
        weighted = f[:, None] * m2[:, :, None]  # (B, R, C, HW)
        return weighted @ f[:, None].transpose(2, 3) / m2.sum(-1).clamp_min(1e-8)[..., None, None]


def region_masks(masks: Tensor, size: tuple[int, int]) -> Tensor:
    """``(B, R, h, w)`` masks average-pooled to a feature map's ``size``: a position's weight is the share of its
    pixels that the region covers."""
    return masks.float() if tuple(masks.shape[-2:]) == tuple(size) else F.adaptive_avg_pool2d(masks.float(), size)


def _relative_squared_error(input: Tensor, target: Tensor, eps: float = 1e-8) -> Tensor:
    """Mean squared error divided by the mean square of the target, per pair: ``(B, ...) -> (B,)``."""
    with torch.autocast(input.device.type, enabled=False):
        input, target = input.float(), target.float()
        dims = tuple(range(1, input.ndim))
        return (input - target).pow(2).mean(dims) / (target.pow(2).mean(dims) + eps)


def content_loss(features: Tensor, target: Tensor) -> Tensor:
    """Squared error between feature maps, relative to the target's energy.

    Args:
        features: ``(B, C, H, W)`` activations of the images being optimised.
        target: ``(B, C, H, W)`` activations of the content images.

    Returns:
        ``(B,)``: ``mean((F - P)^2) / mean(P^2)``. The paper uses ``sum((F - P)^2) / 2``; normalising makes the
        same ``content_weight`` mean the same thing for every layer, backbone and image size.

    >>> content_loss(torch.zeros(2, 1, 2, 2), torch.ones(2, 1, 2, 2))
    tensor([1., 1.])
    """
    return _relative_squared_error(features, target)


def style_loss(features: Tensor, target_gram: Tensor, masks: Tensor | None = None) -> Tensor:
    """Squared error between Gram matrices, relative to the target Gram's energy.

    Args:
        features: ``(B, C, H, W)`` activations of the images being optimised.
        target_gram: ``(B, C, C)`` Gram matrices of the style images (:func:`gram_matrix`); with ``masks``,
            ``(B, R, C, C)``, one per region.
        masks: optional ``(B, R, h, w)`` masks in ``[0, 1]`` (any size): region ``r`` of the image gets style
            ``r``; positions outside every region get no style loss.

    Returns:
        ``(B,)``: ``mean((G - A)^2) / mean(A^2)``. The paper's ``1 / (4 N^2 M^2)`` factor depends on the layer
        and image size; this normalisation gives every layer a loss of order 1 before optimisation. With masks,
        the regions' losses weighted by the share of the image each covers, so a region's balance between
        style and content is that of an unmasked run, and a mask of ones gives the unmasked loss.
    """
    if masks is None:
        return _relative_squared_error(gram_matrix(features), target_gram)
    b, r = masks.shape[:2]
    masks = region_masks(masks, features.shape[-2:])  # pooled once, for the Grams and the areas
    per_region = _relative_squared_error(gram_matrix(features, masks).flatten(0, 1), target_gram.flatten(0, 1))
    area = masks.mean((-2, -1))  # (B, R)
    return (area * per_region.view(b, r)).sum(1)


def total_variation(images: Tensor) -> Tensor:
    """Mean squared difference between neighbouring pixels, per image.

    Args:
        images: ``(B, C, H, W)``.

    Returns:
        ``(B,)`` float32.

    >>> total_variation(torch.tensor([[[[0.0, 1.0], [0.0, 1.0]]]]))
    tensor([0.5000])
    """
    with torch.autocast(images.device.type, enabled=False):
        x = images.float()
        dh = (x[:, :, 1:, :] - x[:, :, :-1, :]).pow(2).mean((1, 2, 3))
        dw = (x[:, :, :, 1:] - x[:, :, :, :-1]).pow(2).mean((1, 2, 3))
        return (dh + dw) / 2
