"""With real pretrained weights, the default settings really stylise: style statistics move to the painting's,
the photo stays recognisable, and as much of it at 64 px as at 128 px."""

import pytest
import torch
from torchmetrics.functional.image import structural_similarity_index_measure as ssim

from lightning_style.losses import content_loss, gram_matrix, style_loss

from helpers import ROOT, fit, results

pytestmark = pytest.mark.slow  # end-to-end: python -m pytest -m 'not slow' skips them


def balance_judge():
    """``benchmarks/balance.py``'s measures of a result (its "shapes": the SSIM of the edges, images shrunk 4 times)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("balance", ROOT / "benchmarks" / "balance.py")
    balance = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(balance)
    return balance.judge


def test_default_weights_give_a_stylised_recognisable_image_alike_at_two_sizes(tmp_path, hed_weights):
    content, style = ROOT / "examples/content/chelsea.png", ROOT / "examples/style/swirls.png"
    model, trainer = fit(tmp_path, content, style, steps=75, image_size=128, backbone="vgg16",
                         weights=str(hed_weights))
    (pair,) = results(trainer).values()
    result, photo, style = pair.image[None], pair.content[None], pair.styles[0]
    painting = torch.nn.functional.interpolate(style[None], size=photo.shape[2:], mode="bilinear", antialias=True)

    with torch.no_grad():
        def style_error(image):
            features, reference = model.features(image), model.features(style[None])
            return sum(style_loss(features[layer], gram_matrix(reference[layer]))
                       for layer in model.style_layers).item()

        def content_error(image):
            return content_loss(model.features(image)["relu4_2"], model.features(photo)["relu4_2"]).item()

        # Style: the result's Gram statistics are far closer to the painting's than the photo's are.
        assert style_error(result) < 0.05 * style_error(photo)
        # Content: the result's deep features are closer to the photo's than the painting's are.
        assert content_error(result) < 0.95 * content_error(painting)
    # Independent of VGG: colours move towards the painting's, and the photo's structure survives.
    colour = lambda image: image.mean((2, 3))
    assert (colour(result) - colour(painting)).norm() < 0.5 * (colour(photo) - colour(painting)).norm()
    grey = lambda image: image.mean(1, keepdim=True)
    assert ssim(grey(result), grey(photo)) > 2 * ssim(grey(painting), grey(photo))

    # The same weights at half the size keep about as much of the photo's shapes, seen at the same relative size
    # (README, "Balance and image size": within 6% from 128 to 512 px on two other pairs).
    _, small = fit(tmp_path / "64", content, ROOT / "examples/style/swirls.png", steps=75, image_size=64,
                   backbone="vgg16", weights=str(hed_weights))
    (small,) = results(small).values()
    judge = balance_judge()
    kept = [judge(run.image, run.content, run.styles[0], model.features)["coarse_edge_ssim"] for run in (pair, small)]
    assert 0.85 < kept[1] / kept[0] < 1.15, kept
