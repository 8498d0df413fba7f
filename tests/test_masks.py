"""Spatial control: each style painted in its mask's region of the content, none outside every mask."""

import numpy as np
import pytest
import torch
from PIL import Image

from lightning_style import PairDataModule, StyleTransferError
from lightning_style.features import VGGFeatures
from lightning_style.losses import gram_matrix, style_loss

from helpers import ROOT, fit, results, write_image


def half_mask(path, size=(48, 40), side="left"):
    """White on one half, black on the other."""
    pixels = np.zeros((size[1], size[0]), dtype=np.uint8)
    pixels[:, : size[0] // 2] = 255
    Image.fromarray(pixels if side == "left" else 255 - pixels).save(path)
    return path


def test_masks_are_resized_to_each_content(tmp_path, images):
    masks = [half_mask(tmp_path / "left.png", (96, 80)), half_mask(tmp_path / "right.png", (96, 80), "right")]
    data = PairDataModule(str(images["content"]), [str(images["style"]), str(images["style2"])], pairing="blend",
                          masks=[str(m) for m in masks], image_size=32)
    batch = data.decode([0])
    masks = batch.masks[0]
    assert masks.shape == (2, *batch.contents.shape[2:])
    assert masks[0, :, :10].min() > 0.99 and masks[0, :, -10:].max() < 0.01
    torch.testing.assert_close(masks.sum(0), torch.ones_like(masks[0]), atol=0.02, rtol=0)


def test_the_style_loss_of_a_region_does_not_reach_pixels_outside_it():
    features = VGGFeatures(["relu1_1"], backbone="vgg16", weights=None)
    image = torch.rand(1, 3, 16, 16, requires_grad=True)
    masks = torch.zeros(1, 1, 16, 16)
    masks[..., :8] = 1
    target = gram_matrix(features(torch.rand(1, 3, 16, 16))["relu1_1"])[:, None]
    style_loss(features(image)["relu1_1"], target, masks).sum().backward()
    # relu1_1 sees 3x3 pixels: only the column next to the region's edge gets some of its gradient
    assert image.grad[..., :9].abs().sum() > 0
    assert torch.equal(image.grad[..., 9:], torch.zeros_like(image.grad[..., 9:]))


def test_no_style_outside_the_masks(tmp_path, images):
    mask = half_mask(tmp_path / "left.png")
    # Shallow style layers (receptive fields of 5 and 14 px) keep the style's reach local. L-BFGS, because Adam
    # would move every pixel by about lr per step, even where the gradient is only the content loss's tiny one.
    lbfgs = lambda params: torch.optim.LBFGS(params, lr=1, max_iter=1, history_size=10)
    _, trainer = fit(tmp_path, images["content"], [images["style"]], pairing="blend", masks=[str(mask)], steps=10,
                     image_size=64, style_weight=1000.0, style_layers=["relu1_1", "relu2_1"], optimizer=lbfgs)
    (pair,) = results(trainer).values()
    change = (pair.image - pair.content).abs().mean((0, 1))
    assert change[:24].mean() > 10 * change[-16:].mean()  # the left half is painted; the right, far from it, barely


@pytest.mark.slow
def test_two_styles_in_two_regions_with_real_weights(tmp_path, hed_weights):
    """Left half in one painting's colours, right half in the other's."""
    content = ROOT / "examples/content/chelsea.png"
    styles = [ROOT / "examples/style/swirls.png", ROOT / "examples/style/embers.png"]
    width, height = Image.open(content).size
    masks = [half_mask(tmp_path / "left.png", (width, height)),
             half_mask(tmp_path / "right.png", (width, height), "right")]
    _, trainer = fit(tmp_path, content, styles, pairing="blend", masks=[str(m) for m in masks], steps=60,
                     image_size=96, backbone="vgg16", weights=str(hed_weights))  # as clear as at 128 px
    (pair,) = results(trainer).values()
    result = pair.image
    left, right = result[:, :, :36], result[:, :, -36:]  # the outer 3/8 of each side
    colour = lambda image: image.reshape(3, -1).mean(1)
    swirls, embers = colour(pair.styles[0]), colour(pair.styles[1])
    assert (colour(left) - swirls).norm() < (colour(left) - embers).norm()
    assert (colour(right) - embers).norm() < (colour(right) - swirls).norm()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"pairing": "product"}, r"^PairDataModule\(masks=\[.*a.png', .*b.png'\]\) needs pairing='blend'"),
        ({"style_weights": [1.0, 2.0]}, r"^PairDataModule\(masks=\[.*\]\) and style_weights do not go together"),
        ({"masks": "one"},
         r"^PairDataModule\(masks=\[.*a.png'\]\) must be one mask per style image: got 1 masks and 2 styles$"),
        ({"masks": "missing"}, r"mask .*missing.png: no such file"),
        ({"masks": "tall"},
         r"mask .*tall.png: 40x80 px, but content .*photo.png is 48x40 px: a mask needs the content's aspect ratio"),
    ],
)
def test_bad_masks(tmp_path, images, kwargs, message):
    masks = [str(half_mask(tmp_path / "a.png")), str(half_mask(tmp_path / "b.png", side="right"))]
    kwargs = {"pairing": "blend", **kwargs}
    if kwargs.get("masks") == "one":
        masks = masks[:1]
    elif kwargs.get("masks") == "missing":
        masks[1] = str(tmp_path / "missing.png")
    elif kwargs.get("masks") == "tall":
        masks[1] = str(write_image(tmp_path / "tall.png", size=(40, 80)))
    kwargs["masks"] = masks
    with pytest.raises(StyleTransferError, match=message):
        PairDataModule(str(images["content"]), [str(images["style"]), str(images["style2"])], **kwargs)


def test_a_black_mask_is_refused_before_any_compute(tmp_path, images):
    Image.new("L", (48, 40)).save(tmp_path / "black.png")
    data = PairDataModule(str(images["content"]), str(images["style"]), pairing="blend",
                          masks=str(tmp_path / "black.png"))
    with pytest.raises(StyleTransferError, match="black.png: black everywhere, so its style would be painted nowhere"):
        data.setup("fit")


def test_masks_follow_the_displayed_orientation_of_the_content(tmp_path, images):
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 60x40, shown 40x60
    Image.new("RGB", (60, 40), (90, 120, 30)).save(tmp_path / "portrait.jpg", exif=exif)
    portrait_mask = half_mask(tmp_path / "portrait_mask.png", size=(40, 60))
    data = PairDataModule(str(tmp_path / "portrait.jpg"), str(images["style"]), pairing="blend",
                          masks=str(portrait_mask), image_size=32)
    batch = data.decode([0])
    assert batch.masks.shape == (1, 1, 32, 21) and batch.contents.shape == (1, 3, 32, 21)
    with pytest.raises(StyleTransferError,
                       match=r"landscape_mask.png: 60x40 px, but content .*portrait.jpg is 40x60 px"):
        PairDataModule(str(tmp_path / "portrait.jpg"), str(images["style"]), pairing="blend",
                       masks=str(half_mask(tmp_path / "landscape_mask.png", size=(60, 40))))
