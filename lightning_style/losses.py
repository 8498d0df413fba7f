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


# --- style statistics beyond the Gram matrix ---------------------------------------------------------------------
def position_weights(features: Tensor, masks: Tensor | None = None) -> Tensor:
    """``(B, R, H W)`` weights of a feature map's positions, summing to 1 over each region (``R`` = 1 without
    ``masks``): the empirical distribution of the features of each region.

    >>> position_weights(torch.zeros(1, 2, 1, 2), torch.tensor([[[[1.0, 0.5]]]]))
    tensor([[[0.6667, 0.3333]]])
    """
    b, _, h, w = features.shape
    if masks is None:
        return features.new_full((b, 1, h * w), 1 / (h * w), dtype=torch.float32)
    m = region_masks(masks, (h, w)).flatten(2)
    return m / m.sum(-1, keepdim=True).clamp_min(1e-8)


def moments(features: Tensor, weights: Tensor) -> tuple[Tensor, Tensor]:
    """Weighted mean ``(B, R, C)`` and second moment ``E[f f^T]`` ``(B, R, C, C)`` of ``(B, C, H, W)`` features
    under ``(B, R, H W)`` :func:`position_weights`, in float32. Both are linear in the distribution: a blend's
    targets are the weighted sums of its styles'. Without masks the second moment is :func:`gram_matrix`."""
    with torch.autocast(features.device.type, enabled=False):
        f = features.float().flatten(2)  # (B, C, N)
        mean = torch.einsum("brn,bcn->brc", weights, f)
        second = (f[:, None] * weights[:, :, None]) @ f[:, None].transpose(-1, -2)
        return mean, second


def covariance(mean: Tensor, second: Tensor) -> Tensor:
    """``E[f f^T] - mu mu^T``, symmetrised."""
    cov = second - mean[..., :, None] * mean[..., None, :]
    return (cov + cov.transpose(-1, -2)) / 2


def sqrtm(matrix: Tensor) -> Tensor:
    """Square root of symmetric positive semi-definite matrices ``(..., C, C)`` by eigendecomposition, in float64
    (returned so), so that the tiny and slightly negative eigenvalues of a rank-deficient covariance don't spoil it."""
    values, vectors = torch.linalg.eigh(matrix.double())
    return vectors * values.clamp_min(0).sqrt()[..., None, :] @ vectors.transpose(-1, -2)


def eigenvalues(matrix: Tensor) -> Tensor:
    """Eigenvalues of symmetric matrices, in float64: in float32, LAPACK and cuSOLVER fail to converge on the
    rank-deficient covariances of small feature maps (fewer positions than channels). Should float64 fail too,
    the diagonal gets a jitter of 1e-9 of its mean. (Newton-Schulz iterations, the matmul-only alternative, were
    measured about 6 times slower than this on the CPU, and diverge in float32 on these matrices.)"""
    matrix = matrix.double()
    try:
        return torch.linalg.eigvalsh(matrix)
    except torch.linalg.LinAlgError:
        jitter = 1e-9 * torch.diagonal(matrix, dim1=-2, dim2=-1).mean(-1).abs().clamp_min(1e-30)
        return torch.linalg.eigvalsh(matrix + jitter[..., None, None] * torch.eye(matrix.shape[-1], dtype=matrix.dtype,
                                                                                device=matrix.device))


def gaussian_wasserstein(mean: Tensor, cov: Tensor, target_mean: Tensor, target_cov_sqrt: Tensor,
                         target_cov_trace: Tensor, eps: float = 1e-5, centered: Tensor | None = None) -> Tensor:
    """Squared Wasserstein-2 distance between Gaussians ``N(mean, cov)`` and the target's, over leading dims:
    ``|mu - mu_t|^2 + tr(S) + tr(S_t) - 2 tr sqrt(S_t^1/2 S S_t^1/2)``.

    The trace of the square root is the sum of the square roots of the eigenvalues (:func:`eigenvalues`, whose
    gradient needs no eigenvector differences, so repeated eigenvalues are harmless). The gradient of each root is taken
    at the eigenvalue plus ``eps`` times their mean: a rank-deficient covariance (fewer positions than channels)
    would otherwise have an infinite gradient at its zero eigenvalues. The value itself is not shifted.

    ``centered``, the features minus their mean times the square roots of their weights ``(..., C, N)`` (so that
    ``cov = centered @ centered^T``), lets a feature map with fewer positions than channels take the eigenvalues of
    the ``N x N`` matrix ``P^T P``, ``P = S_t^1/2 centered``, instead of the ``C x C`` ``P P^T``: the same values but
    for ``C - N`` zeros, whose roots add nothing to the value and, as their eigenvectors are orthogonal to every
    column of ``P``, nothing to the gradient. relu5_1 of a 96x64 px image: 24 x 24 instead of 512 x 512.
    """
    with torch.autocast(mean.device.type, enabled=False):
        root = target_cov_sqrt.double()
        channels = cov.shape[-1]
        if centered is not None and centered.shape[-1] < channels:
            projected = root @ centered.double()
            cross = projected.transpose(-1, -2) @ projected
        else:
            cross = root @ cov.double() @ root  # float64: float32's rounding turns zero eigenvalues into roots of 1e-7
        values = eigenvalues((cross + cross.transpose(-1, -2)) / 2).float().clamp_min(0)
        spread = eps * (values.sum(-1, keepdim=True) / channels).detach().clamp_min(1e-12)  # eps times their mean
        smooth = (values + spread).sqrt()
        root_trace = (smooth - (smooth - values.sqrt()).detach()).sum(-1)  # value sqrt(v), gradient of smooth
        trace = torch.diagonal(cov, dim1=-2, dim2=-1).sum(-1)
        return (mean.float() - target_mean).pow(2).sum(-1) + trace + target_cov_trace - 2 * root_trace


def interpolate(x: Tensor, xp: Tensor, fp: Tensor) -> Tensor:
    """``numpy.interp`` over the last dim, batched: ``xp`` non-decreasing; beyond its ends the end values."""
    index = torch.searchsorted(xp, x).clamp(1, xp.shape[-1] - 1)
    x0, x1 = xp.gather(-1, index - 1), xp.gather(-1, index)
    f0, f1 = fp.gather(-1, index - 1), fp.gather(-1, index)
    t = ((x - x0) / (x1 - x0).clamp_min(1e-12)).clamp(0, 1)
    return f0 + t * (f1 - f0)


def sliced_wasserstein(values: Tensor, target_values: Tensor, weights: Tensor | None = None,
                       target_weights: Tensor | None = None) -> Tensor:
    """Squared 1-D Wasserstein-2 distances between (weighted) samples, one per projection, averaged.

    Args:
        values: ``(B, P, N)`` projections of the image's features (``P`` directions, ``N`` positions).
        target_values: ``(B, R, P, M)`` projections of the target samples of each of ``R`` regions.
        weights: ``(B, R, N)`` the positions' weights in each region (:func:`position_weights`); ``None``: one
            region, every position alike.
        target_weights: ``(B, R, M)`` the target samples' weights, summing to 1 (0 for padding); ``None``: alike.

    Returns:
        ``(B, R)``: ``mean_p sum_n w_n (x_(n) - Q_t(u_n))^2``, where ``x_(n)`` are the sorted projections, ``u_n`` the
        middle of their share of the cumulative weight, and ``Q_t`` the target's quantile function, interpolated
        linearly: the two sides may have different numbers of positions, and a blend's target is the mixture of
        its styles. Sorting is differentiable (a permutation); the quantile levels carry no gradient.
    """
    with torch.autocast(values.device.type, enabled=False):
        b, r, p, m = target_values.shape
        n = values.shape[-1]
        sorted_values, order = values.float().sort(-1)
        if weights is None and target_weights is None:  # levels (n + 1/2) / N: linear resampling, no search
            target = target_values.float().sort(-1).values.reshape(b * r * p, 1, m)
            quantiles = F.interpolate(target, size=n, mode="linear", align_corners=False).view(b, r, p, n)
            return (sorted_values[:, None] - quantiles).pow(2).mean(-1).mean(-1)
        weights = values.new_full((b, r, n), 1 / n) if weights is None else weights
        target_weights = target_values.new_full((b, r, m), 1 / m) if target_weights is None else target_weights
        padding = target_weights == 0  # padded samples sort last, at the maximum, and weigh nothing
        top = target_values.masked_fill(padding[:, :, None], -torch.inf).amax(-1, keepdim=True)
        target = torch.where(padding[:, :, None], top, target_values.float())
        target, target_order = target.sort(dim=-1, stable=True)
        target_w = target_weights[:, :, None].expand(b, r, p, m).gather(-1, target_order)
        target_levels = target_w.cumsum(-1) - target_w / 2
        w = weights[:, :, None].expand(b, r, p, n).gather(-1, order[:, None].expand(b, r, p, n))
        levels = w.cumsum(-1) - w / 2
        quantiles = interpolate(levels.contiguous(), target_levels.contiguous(), target)
        return (w * (sorted_values[:, None] - quantiles).pow(2)).sum(-1).mean(-1)
