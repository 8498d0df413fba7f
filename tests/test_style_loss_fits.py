"""The Wasserstein-2 and sliced Wasserstein style losses in whole fits: each lowers its style term with Adam and
L-BFGS, resumes exactly, pairs a batch as if alone, with blends, masks, the pyramid, mixed precision and the command
line."""

import numpy as np
import pytest
import torch
from PIL import Image

from lightning_style.objective import StyleObjective
from lightning_style.record import Record

from helpers import assert_same_results, fit, results, resumed_and_straight

ADAM = lambda params: torch.optim.Adam(params, lr=0.05)
LBFGS = lambda params: torch.optim.LBFGS(params, lr=1, max_iter=1, history_size=10)


@pytest.mark.parametrize("optimizer", ["adam", "lbfgs"])
@pytest.mark.parametrize("loss", ["wasserstein", "sliced"])
def test_each_loss_lowers_its_style_term_with_either_optimiser(tmp_path, images, loss, optimizer):
    model, trainer = fit(tmp_path, images["content"], images["style"], steps=8, style_loss=loss,
                         optimizer=ADAM if optimizer == "adam" else LBFGS, style_weight=1000.0)
    with torch.no_grad():
        start, end = (model.run.objective(image, step=0)["style"] for image in (model.run.contents, model.images))
    assert end < 0.5 * start and model.images.min() >= 0 and model.images.max() <= 1
    assert (tmp_path / "images" / "photo__paint.png").is_file()


@pytest.mark.parametrize("loss", ["wasserstein", "sliced"])
def test_resume_is_exact(tmp_path, images, loss):
    """The sliced directions come from the seed, the layer and the step: a resumed run draws the same ones."""
    kwargs = {"steps": 6, "init": "noise", "style_loss": loss, "optimizer": ADAM}
    (_, resumed), (_, straight) = resumed_and_straight(tmp_path, images["content"], images["style"], stop_at=3,
                                                       **kwargs)
    assert_same_results(resumed, straight)


def test_sliced_directions_change_at_every_step_and_differ_with_the_seed(tmp_path, images):
    a, _ = fit(tmp_path / "a", images["content"], images["style"], steps=1, style_loss="sliced")
    image = a.run.contents.clone()
    with torch.no_grad():
        at = [a.run.objective(image, step=step)["style"].item() for step in (0, 0, 1)]
    assert at[0] == at[1] != at[2]
    b, _ = fit(tmp_path / "b", images["content"], images["style"], steps=1, style_loss="sliced", seed=1)
    with torch.no_grad():
        assert b.run.objective(image, step=0)["style"].item() != at[0]


@pytest.mark.parametrize("loss", ["wasserstein", "sliced"])
def test_a_pair_in_a_batch_is_optimised_as_if_alone(tmp_path, images, loss):
    from helpers import collected

    _, together = fit(tmp_path / "a", [images["content"], images["content2"]], [images["style"], images["style2"]],
                      pairing="zip", steps=4, init="noise", style_loss=loss)
    _, alone = fit(tmp_path / "b", images["content2"], images["style2"], steps=4, init="noise", style_loss=loss)
    # Up to rounding: a batch of two sums in another order than one image alone, and Adam, which moves a pixel by
    # about lr whatever its gradient's size, turns a rounding-sized gradient into a step (wasserstein's roots of
    # tiny eigenvalues make such gradients). Isolation itself is exact: test_pairs_never_influence_each_other.
    difference = (collected(together)["photo2__paint2"] - collected(alone)["photo2__paint2"]).abs()
    assert difference.mean() < 1e-4 and difference.max() < 1e-2, (difference.mean(), difference.max())


@pytest.mark.parametrize("loss", ["wasserstein", "sliced"])
def test_blends_masks_and_the_pyramid(tmp_path, images, loss):
    from PIL import Image

    from helpers import write_image

    left = tmp_path / "left.png"
    Image.fromarray((torch.arange(48)[None, :].expand(40, 48) < 24).numpy().astype("uint8") * 255).save(left)
    right = tmp_path / "right.png"
    Image.fromarray((torch.arange(48)[None, :].expand(40, 48) >= 24).numpy().astype("uint8") * 255).save(right)
    model, trainer = fit(tmp_path / "masks", images["content"], [images["style"], images["style2"]], pairing="blend",
                         masks=[str(left), str(right)], steps=3, image_size=64, style_loss=loss, levels=2,
                         level_steps=1)
    (pair,) = results(trainer).values()
    objective = model.run.objective
    assert objective.masks.shape[1] == 2 and torch.isfinite(pair.image).all()

    def alone(style, factor):  # one style's own targets at one pyramid level
        own = StyleObjective(model.features, pair.content[None], [(style,)], content_layers={"relu4_2": 1.0},
                             style_layers={"relu1_1": 1.0}, style_loss=loss, factors=(factor,))
        return own.style_target("relu1_1", factor)

    for factor in (1, 2):  # each region's target is its own style's, at each level's size
        for region, style in enumerate(pair.styles):
            own = alone(style, factor)
            keys = set(own) & set(objective.style_target("relu1_1", factor))
            assert keys
            for key in keys:
                torch.testing.assert_close(objective.style_target("relu1_1", factor)[key][0, region], own[key][0, 0])
    big = write_image(tmp_path / "big.png", size=(80, 60), seed=9)  # the blend's styles differ in size
    model, trainer = fit(tmp_path / "blend", images["content"], [images["style"], big], pairing="blend",
                         style_weights=[0.7, 0.3], steps=2, style_loss=loss)
    (pair,) = results(trainer).values()
    target = model.run.objective.style_target("relu1_1")
    if loss == "wasserstein":  # the mixture's mean is the weighted mean of the styles' means
        means = [alone(style, 1)["mean"][0, 0] for style in pair.styles]
        torch.testing.assert_close(target["mean"][0, 0], 0.7 * means[0] + 0.3 * means[1])
    else:  # the first style's samples carry 0.7 of the weight
        first = alone(pair.styles[0], 1)["samples"].shape[2]
        torch.testing.assert_close(target["weights"][0, 0, :first].sum(), torch.tensor(0.7))
    assert (tmp_path / "blend" / "images" / "photo__paint+big.png").is_file()


@pytest.mark.parametrize("loss", ["wasserstein", "sliced"])
def test_mixed_precision(tmp_path, images, loss):
    model, _ = fit(tmp_path, images["content"], images["style"], steps=2, style_loss=loss,
                   trainer_kwargs={"precision": "bf16-mixed"})
    assert model.images.dtype == torch.float32 and torch.isfinite(model.images).all()
    assert model.result.losses["style"].dtype == torch.float32


def test_the_command_line_option(tmp_path, capsys):
    from helpers import run_main

    args = ["fit", "--model.weights", "null", "--model.backbone", "vgg16", "--data.image_size", "32", "--data.steps",
            "2", "--trainer.enable_progress_bar", "false"]
    for choice in ("sliced", "gram"):
        code, _ = run_main(*args, "--model.style_loss", choice, "--output.dir", str(tmp_path / choice), capsys=capsys)
        assert code in (0, None)
    sliced, gram = (Record(tmp_path / choice).read("chelsea__swirls") for choice in ("sliced", "gram"))
    assert sliced["settings"]["style_loss"] == "sliced" and gram["settings"]["style_loss"] == "gram"
    pixels = [np.asarray(Image.open(tmp_path / choice / "chelsea__swirls.png")) for choice in ("sliced", "gram")]
    assert not np.array_equal(*pixels)  # the option changed the optimisation, not only the record
    code, err = run_main(*args, "--model.style_loss", "gaussian", capsys=capsys)
    assert code != 0 and "style_loss" in err and "gaussian" in err
