"""Images gone NaN or infinite: a run stops at the first check after the bad step, with the last good images, and
never writes them as a result; a crash between two checks writes the last checked ones."""

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from PIL import Image

from lightning_style import NonFiniteError, StyleTransfer, StyleTransferError
from lightning_style.callbacks import to_uint8

from helpers import fit


def test_a_non_finite_first_step_leaves_the_result(tmp_path, images):
    fit(tmp_path, images["content"], images["style"], steps=2)
    output = tmp_path / "images" / "photo__paint.png"
    before = output.read_bytes()
    # inf in float32
    with pytest.raises(NonFiniteError, match="train/loss became NaN or infinite between global steps 0 and 4"):
        fit(tmp_path, images["content"], images["style"], steps=4, style_weight=1e39)
    assert output.read_bytes() == before
    with pytest.raises(StyleTransferError, match=r"^StyleTransfer\(style_weight=inf\) must be a finite number >= 0$"):
        StyleTransfer(weights=None, style_weight=float("inf"))


class ExplodesAtStep(torch.optim.Adam):
    """Adam whose ``at``-th step (counting from 0) turns the images into infinities: a step gone wrong."""

    def __init__(self, params, at: int) -> None:
        super().__init__(params, lr=0.05)
        self.at, self.count = at, 0

    def step(self, closure=None):
        loss = super().step(closure)
        if self.count == self.at:
            with torch.no_grad():
                for group in self.param_groups:
                    for param in group["params"]:
                        param.mul_(float("inf"))
        self.count += 1
        return loss


@pytest.mark.parametrize("check_every, explodes_at, good_steps", [(1, 3, 3), (10, 14, 10)],
                         ids=["every-step", "every-10"])
def test_an_optimiser_step_that_makes_images_non_finite_rolls_back(tmp_path, images, check_every, explodes_at,
                                                                   good_steps):
    """The run stops at the first check after the bad step, with the images of the last good check: those before the
    bad step when every step is checked, otherwise those of the last multiple of check_every_n_steps."""
    good, _ = fit(tmp_path / "good", images["content"], images["style"], steps=good_steps, init="noise",
                  optimizer=lambda params: torch.optim.Adam(params, lr=0.05))
    pl.seed_everything(0, verbose=False)  # the random VGG weights of fit()'s own model
    model = StyleTransfer(backbone="vgg16", weights=None, init="noise", check_every_n_steps=check_every,
                          optimizer=lambda params: ExplodesAtStep(params, at=explodes_at))
    found = (explodes_at // check_every + 1) * check_every
    with pytest.raises(NonFiniteError, match=f"an image became NaN or infinite between global steps {good_steps} and "
                                             f"{found}; stopped with the images of step {good_steps}, the last check"):
        fit(tmp_path / "bad", images["content"], images["style"], steps=30, model=model)
    torch.testing.assert_close(model.images.detach(), good.images.detach(), atol=1e-6, rtol=0)
    assert not (tmp_path / "bad" / "images" / "photo__paint.png").exists()  # never finished: no result
    with Image.open(tmp_path / "bad" / "images" / "partial" / "photo__paint.png") as written:  # the last good images
        assert np.array_equal(np.asarray(written), to_uint8(good.images[0]))


class FailsAtStep(pl.Callback):
    """Raises at the end of global step ``at``: a crash (or Ctrl-C) between two NaN checks."""

    def __init__(self, at: int) -> None:
        self.at = at

    def on_train_batch_end(self, trainer, *args) -> None:
        if trainer.global_step == self.at:
            raise RuntimeError("crash between two checks")


def test_a_crash_after_an_unchecked_nan_writes_the_last_good_images(tmp_path, images):
    good, _ = fit(tmp_path / "good", images["content"], images["style"], steps=10, init="noise",
                  optimizer=lambda params: torch.optim.Adam(params, lr=0.05))
    pl.seed_everything(0, verbose=False)
    model = StyleTransfer(backbone="vgg16", weights=None, init="noise",
                          optimizer=lambda params: ExplodesAtStep(params, at=12))
    with pytest.raises(RuntimeError, match="crash between two checks"):
        fit(tmp_path / "bad", images["content"], images["style"], steps=30, model=model, callbacks=[FailsAtStep(14)])
    with Image.open(tmp_path / "bad" / "images" / "partial" / "photo__paint.png") as written:  # step 10's, not NaN
        assert np.array_equal(np.asarray(written), to_uint8(good.images[0]))


def test_a_batch_that_fails_before_its_first_check_writes_nothing(tmp_path, images):
    steps = []  # optimiser steps over every batch's optimiser

    def explodes_at_global_step_5(params):
        optimizer = ExplodesAtStep(params, at=-1)
        step = optimizer.step

        def counted(closure=None):
            optimizer.at = optimizer.count if len(steps) == 5 else -1
            steps.append(None)
            return step(closure)

        optimizer.step = counted
        return optimizer

    pl.seed_everything(0, verbose=False)
    model = StyleTransfer(backbone="vgg16", weights=None, optimizer=explodes_at_global_step_5)
    with pytest.raises(NonFiniteError, match="between global steps 5 and 10; stopped with the images of step 5"):
        fit(tmp_path, images["content"], [images["style"], images["style2"]], steps=5, batch_size=1, model=model)
    # The first pair's result was written when its batch finished; the second's starting images are no result.
    assert sorted(path.name for path in (tmp_path / "images").iterdir()) == ["photo__paint.png"]
