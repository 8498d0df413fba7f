"""Colour preservation (Gatys et al. 2017, "Controlling Perceptual Factors in Neural Style Transfer").

Images are ``(3, H, W)`` RGB tensors in ``[0, 1]``.
"""

import torch
from torch import Tensor

# RGB -> YIQ (NTSC): Y is the luminance, I and Q the colour.
_RGB_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])


def _apply(matrix: Tensor, image: Tensor) -> Tensor:
    return torch.einsum("ij,jhw->ihw", matrix.to(image), image)


def to_yiq(image: Tensor) -> Tensor:
    """``(3, H, W)`` RGB -> YIQ: Y is the luminance, I and Q the colour."""
    return _apply(_RGB_TO_YIQ, image)


def keep_content_colours(result: Tensor, content: Tensor) -> Tensor:
    """The result's luminance with the content's colour (I and Q of YIQ), as neural-style's ``-original_colors``.

    Changing only Y adds the same amount to R, G and B: the content's pink, at the grey result's luminance 0.5.

    >>> grey, pink = torch.full((3, 1, 1), 0.5), torch.tensor([0.6, 0.4, 0.4]).view(3, 1, 1)
    >>> keep_content_colours(grey, pink).flatten().round(decimals=3)
    tensor([0.6400, 0.4400, 0.4400])
    """
    yiq = to_yiq(content)
    yiq[0] = to_yiq(result)[0]
    return _apply(torch.linalg.inv(_RGB_TO_YIQ), yiq).clamp(0, 1)


def match_colours(style: Tensor, content: Tensor, eps: float = 1e-5) -> Tensor:
    """The style image with the mean and covariance of its RGB pixels moved to the content's.

    ``x -> C_c^(1/2) C_s^(-1/2) (x - mu_s) + mu_c`` (the paper's "colour histogram matching", linear version).
    """

    def stats(image: Tensor) -> tuple[Tensor, Tensor]:
        pixels = image.reshape(3, -1).double()
        mean = pixels.mean(1, keepdim=True)
        centred = pixels - mean
        return mean, centred @ centred.T / pixels.shape[1] + eps * torch.eye(3, dtype=torch.float64)

    def power(matrix: Tensor, exponent: float) -> Tensor:
        values, vectors = torch.linalg.eigh(matrix)
        return vectors @ torch.diag(values.clamp_min(eps) ** exponent) @ vectors.T

    style_mean, style_cov = stats(style)
    content_mean, content_cov = stats(content)
    transform = power(content_cov, 0.5) @ power(style_cov, -0.5)
    matched = transform @ (style.reshape(3, -1).double() - style_mean) + content_mean
    return matched.reshape(style.shape).to(style.dtype).clamp(0, 1)
