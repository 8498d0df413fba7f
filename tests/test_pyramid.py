"""Coarse-to-fine: the loss is taken at 1/2^k of the size first, then at full size, from one set of images."""

import pytest
import torch

from lightning_style import StyleObjective, StyleTransfer, StyleTransferError, VGGFeatures
from lightning_style.losses import gram_matrix, style_loss
from lightning_style.objective import downsample

from helpers import assert_same_results, fit, resumed_and_straight, write_image

LBFGS = lambda params: torch.optim.LBFGS(params, lr=1, max_iter=1, history_size=10)


def test_schedule():
    model = StyleTransfer(backbone="vgg16", weights=None, levels=3, level_steps=2)
    assert [model.pyramid.factor_at(step) for step in range(7)] == [4, 4, 2, 2, 1, 1, 1]
    assert model.min_image_size == 4 * model.features.min_size


def test_a_coarse_level_has_targets_of_its_own_size():
    """At a coarse level the loss compares the downsampled images with the downsampled style's statistics."""
    features = VGGFeatures(["relu1_1", "relu2_1"], backbone="vgg16", weights=None)
    generator = torch.Generator().manual_seed(0)
    shapes = ((1, 3, 32, 32), (3, 40, 40), (1, 3, 32, 32))
    content, style, images = (torch.rand(shape, generator=generator) for shape in shapes)
    objective = StyleObjective(features, content, [(style,)], content_layers={"relu2_1": 1.0},
                               style_layers={"relu1_1": 1.0}, factors=(1, 2))
    small = gram_matrix(features(downsample(style[None], 2))["relu1_1"])
    torch.testing.assert_close(objective.style_target("relu1_1", 2)["gram"][:, 0], small)
    assert not torch.allclose(objective.style_target("relu1_1", 1)["gram"][:, 0], small, rtol=0.05)
    expected = style_loss(features(downsample(images, 2))["relu1_1"], small)
    torch.testing.assert_close(objective(images, factor=2)["style/relu1_1"], expected)
    torch.testing.assert_close(objective.content_target("relu2_1", 2), features(downsample(content, 2))["relu2_1"])


def test_each_level_runs_the_vgg_at_its_size_on_the_full_size_images(tmp_path):
    content = write_image(tmp_path / "photo.png", size=(128, 96), seed=1)
    style = write_image(tmp_path / "paint.png", size=(128, 96), seed=2)
    model = StyleTransfer(backbone="vgg16", weights=None, levels=3, level_steps=2)
    sizes = []
    model.features.register_forward_pre_hook(lambda module, args: sizes.append(tuple(args[0].shape[-2:])))
    fit(tmp_path, content, style, steps=5, image_size=128, model=model)
    # the batch's first step: content and style targets at each level (full size, 2x, 4x smaller); then one
    # forward per step
    assert sizes[:6] == [(96, 128), (96, 128), (48, 64), (48, 64), (24, 32), (24, 32)]
    assert sizes[6:] == [(24, 32)] * 2 + [(48, 64)] * 2 + [(96, 128)]
    assert model.images.shape == (1, 3, 96, 128)


def test_the_optimiser_starts_afresh_at_each_level(tmp_path):
    content = write_image(tmp_path / "photo.png", size=(64, 64), seed=1)
    style = write_image(tmp_path / "paint.png", size=(64, 64), seed=2)
    _, trainer = fit(tmp_path, content, style, steps=5, image_size=64, levels=2, level_steps=3, optimizer=LBFGS)
    (state,) = trainer.optimizers[0].state.values()
    assert state["n_iter"] == 2  # steps 3 and 4, at full size
    _, trainer = fit(tmp_path, content, style, steps=5, image_size=64, levels=2, level_steps=3)
    (state,) = trainer.optimizers[0].state.values()
    assert state["step"] == 2


@pytest.mark.parametrize("optimizer", ["adam", "lbfgs"])
def test_resume_across_a_level_change_is_exact(tmp_path, optimizer):
    content = write_image(tmp_path / "photo.png", size=(64, 64), seed=1)
    style = write_image(tmp_path / "paint.png", size=(64, 64), seed=2)
    kwargs = {"image_size": 64, "levels": 2, "level_steps": 3, "init": "noise",
              "optimizer": LBFGS if optimizer == "lbfgs" else None}
    (_, resumed), (_, straight) = resumed_and_straight(tmp_path, content, style, stop_at=3, steps=6, **kwargs)
    assert_same_results(resumed, straight)


def test_images_too_small_for_the_coarsest_level(tmp_path, images):
    with pytest.raises(StyleTransferError, match=r"^PairDataModule\(image_size=32\) makes content .*photo.png "
                                                r"32x27 px, but .* at least 32 px"):
        fit(tmp_path, images["content"], images["style"], image_size=32, levels=2)


def test_bad_levels():
    with pytest.raises(StyleTransferError, match=r"^StyleTransfer\(levels=0\) must be a whole number >= 1$"):
        StyleTransfer(weights=None, levels=0)
