"""The measures that ``quality.py`` scores its runs' images with (no run optimises them): the style distances, the
content distance, the SSIM of the edge maps and the colour histograms' distance."""

import torch
import torch.nn.functional as F
from torchmetrics.functional.image import structural_similarity_index_measure as ssim

from lightning_style.features import VGGFeatures
from lightning_style.losses import (
    content_loss,
    covariance,
    gaussian_wasserstein,
    moments,
    position_weights,
    sliced_wasserstein,
    sqrtm,
    style_loss,
)

STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")


class Scorer:
    """The measures of one (content, style) pair, with the style's and the photo's statistics computed once."""

    def __init__(self, features: VGGFeatures, content: torch.Tensor, style: torch.Tensor) -> None:
        self.features = features
        with torch.no_grad():
            self.content_act = features(content[None])
            style_act = features(style[None])
        self.targets = {}
        for layer in STYLE_LAYERS:
            a = style_act[layer]
            mean, second = moments(a, position_weights(a))
            cov = covariance(mean, second)
            directions = torch.nn.functional.normalize(
                torch.randn(a.shape[1], a.shape[1], generator=torch.Generator().manual_seed(1234)), dim=0)
            self.targets[layer] = (second[:, 0], mean, sqrtm(cov), cov.diagonal(dim1=-2, dim2=-1).sum(-1),
                                   second.diagonal(dim1=-2, dim2=-1).sum(-1), directions,
                                   torch.einsum("bcn,cp->bpn", a.flatten(2), directions)[:, None])
        self.content = content
        self.style_histogram = histogram(style)
        self.content_edges = edges(content)

    @torch.no_grad()
    def __call__(self, image: torch.Tensor) -> dict[str, float]:
        act = self.features(image[None])
        scores = {"gram": 0.0, "w2": 0.0, "sliced": 0.0}
        for layer in STYLE_LAYERS:
            gram, mean, cov_sqrt, cov_trace, energy, directions, target_projected = self.targets[layer]
            f = act[layer]
            scores["gram"] += style_loss(f, gram).item() / len(STYLE_LAYERS)
            m, s = moments(f, position_weights(f))
            w2 = gaussian_wasserstein(m, covariance(m, s), mean, cov_sqrt, cov_trace) / energy
            scores["w2"] += w2.item() / len(STYLE_LAYERS)
            projected = torch.einsum("bcn,cp->bpn", f.flatten(2), directions)
            sliced = sliced_wasserstein(projected, target_projected) / (energy / f.shape[1])
            scores["sliced"] += sliced.item() / len(STYLE_LAYERS)
        scores["content"] = content_loss(act["relu4_2"], self.content_act["relu4_2"]).item()
        scores["edge_ssim"] = ssim(edges(image)[None], self.content_edges[None], data_range=1.0).item()
        scores["colour"] = 0.5 * (histogram(image) - self.style_histogram).abs().sum().item()
        return scores


def edges(image: torch.Tensor) -> torch.Tensor:
    """``(1, H, W)`` Sobel gradient magnitude of the grey image, scaled to ``[0, 1]``."""
    grey = (image * torch.tensor([0.299, 0.587, 0.114])[:, None, None]).sum(0)[None, None]
    kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
    gx = F.conv2d(F.pad(grey, (1, 1, 1, 1), mode="replicate"), kx[None, None])
    gy = F.conv2d(F.pad(grey, (1, 1, 1, 1), mode="replicate"), kx.T[None, None])
    return ((gx.pow(2) + gy.pow(2)).sqrt() / 4).clamp(0, 1)[0]


def histogram(image: torch.Tensor, bins: int = 8) -> torch.Tensor:
    """The 8x8x8 RGB histogram of a ``(3, H, W)`` image, summing to 1."""
    index = (image.clamp(0, 1) * (bins - 1e-6)).long()
    flat = (index[0] * bins + index[1]) * bins + index[2]
    return torch.bincount(flat.flatten(), minlength=bins**3).float() / flat.numel()
