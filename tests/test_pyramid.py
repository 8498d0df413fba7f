"""Coarse-to-fine: the loss is taken at 1/2^k of the size first, then at full size, from one set of images."""

import pytest
import torch
from pytorch_lightning.callbacks import ModelCheckpoint

from lightning_style import StyleTransfer, StyleTransferError

from conftest import fit, write_image

LBFGS = lambda params: torch.optim.LBFGS(params, lr=1, max_iter=1, history_size=10)


def test_schedule():
    model = StyleTransfer(backbone="vgg16", weights=None, levels=3, level_steps=2)
    assert [model.factor_at(step) for step in range(7)] == [4, 4, 2, 2, 1, 1, 1]
    assert model.min_image_size == 4 * model.features.min_size


def test_each_level_runs_the_vgg_at_its_size_on_the_full_size_images(tmp_path):
    content = write_image(tmp_path / "photo.png", size=(128, 96), seed=1)
    style = write_image(tmp_path / "paint.png", size=(128, 96), seed=2)
    model = StyleTransfer(backbone="vgg16", weights=None, levels=3, level_steps=2, steps=5)
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
    kwargs = {"image_size": 64, "levels": 2, "level_steps": 3, "init": "noise", "optimizer": LBFGS if optimizer == "lbfgs" else None}
    straight, _ = fit(tmp_path / "straight", content, style, steps=6, **kwargs)
    fit(tmp_path / "first", content, style, steps=6, max_steps=3, callbacks=[ModelCheckpoint(tmp_path / "ckpt", save_last=True)], **kwargs)
    resumed, _ = fit(tmp_path / "resumed", content, style, steps=6, ckpt_path=str(tmp_path / "ckpt" / "last.ckpt"), **kwargs)
    torch.testing.assert_close(resumed.images, straight.images, atol=1e-6, rtol=0)


def test_images_too_small_for_the_coarsest_level(tmp_path, images):
    with pytest.raises(StyleTransferError, match=r"pair photo__paint: 32x27 px, .*StyleTransfer\(levels=\.\.\.\).* at least 32 px"):
        fit(tmp_path, images["content"], images["style"], image_size=32, levels=2)


def test_bad_levels():
    with pytest.raises(StyleTransferError, match=r"StyleTransfer\(levels=\.\.\.\) and StyleTransfer\(level_steps=\.\.\.\) must be >= 1, got 0 and 100"):
        StyleTransfer(weights=None, levels=0)
