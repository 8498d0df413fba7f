import pytest
import pytorch_lightning as pl
import torch
import torchvision

from lightning_style import PairDataModule, StyleTransfer, StyleTransferError
from lightning_style.data import load_image

from helpers import assert_same_results, collected, fit, results, resumed_and_straight


def test_images_are_the_only_trainable_parameters(tmp_path, images):
    model, trainer = fit(tmp_path, images["content"], [images["style"], images["style2"]], backbone="vgg19_bn")
    assert [name for name, _ in model.named_parameters()] == ["images"]
    assert model.images.shape == (2, 3, 27, 32)  # two pairs in one batch, 48x40 resized to a 32 px long side
    optimised = [p for group in trainer.optimizers[0].param_groups for p in group["params"]]
    assert len(optimised) == 1 and optimised[0] is model.images


def test_batchnorm_statistics_do_not_move(tmp_path, images):
    # BatchNorm is folded into the convs, except after a tapped conv: tap conv1_1 to keep bn1_1
    model = StyleTransfer(backbone="vgg19_bn", weights=None, content_layers=["conv1_1", "relu4_2"])
    bn = model.features.net[1]
    assert isinstance(bn, torchvision.ops.FrozenBatchNorm2d)
    bn.running_mean.normal_()
    before = {name: buffer.clone() for name, buffer in bn.named_buffers()}
    fit(tmp_path, images["content"], images["style"], steps=2, model=model)
    for name, buffer in bn.named_buffers():
        assert torch.equal(buffer, before[name]), name


def test_a_python_run_prints_only_what_a_user_can_act_on(tmp_path, images, capsys, caplog, recwarn):
    """No model summary (0 parameters until a batch starts) and no "module(s) in eval mode" warning."""
    model = StyleTransfer(backbone="vgg16", weights=None)
    data = PairDataModule(images["content"], images["style"], image_size=32, steps=2)
    trainer = pl.Trainer(max_epochs=-1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         default_root_dir=tmp_path)
    trainer.fit(model, data)
    out = capsys.readouterr()
    printed = out.out + out.err + caplog.text
    assert "Params" not in printed and "override" not in printed
    assert "eval mode" not in str([str(w.message) for w in recwarn])


@pytest.mark.parametrize(
    "optimizer",
    [
        lambda params: torch.optim.Adam(params, lr=0.05),
        lambda params: torch.optim.LBFGS(params, lr=1, max_iter=1, history_size=10),
        lambda params: torch.optim.LBFGS(params, max_iter=3, line_search_fn="strong_wolfe"),
    ],
    ids=["adam", "lbfgs", "lbfgs-strong-wolfe"],
)
def test_optimizers_lower_the_loss_and_keep_pixels_in_range(tmp_path, images, optimizer):
    model, trainer = fit(tmp_path, images["content"], images["style"], steps=8, init="noise", optimizer=optimizer)
    initial = torch.rand(model.images.shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        start, end = model.run.objective(initial)["loss"], model.run.objective(model.images)["loss"]
    assert end < 0.7 * start
    assert model.images.min() >= 0 and model.images.max() <= 1
    assert trainer.global_step == 8


def test_a_pair_in_a_batch_is_optimised_as_if_alone(tmp_path, images):
    together, trainer = fit(tmp_path / "a", [images["content"], images["content2"]], images["style"], steps=4,
                            init="noise")
    _, alone = fit(tmp_path / "b", images["content2"], images["style"], steps=4, init="noise")
    assert together.result.names == ("photo__paint", "photo2__paint")
    torch.testing.assert_close(collected(trainer)["photo2__paint"], collected(alone)["photo2__paint"],
                               atol=1e-5, rtol=1e-5)


def test_pairs_of_different_sizes(tmp_path, images):
    from helpers import write_image

    tall = write_image(tmp_path / "in" / "tall.png", size=(30, 60), seed=5)
    _, trainer = fit(tmp_path, [images["content"], tall], images["style"])
    assert {name: tuple(image.shape) for name, image in collected(trainer).items()} == {
        "photo__paint": (3, 27, 32), "tall__paint": (3, 32, 16)}  # one batch per shape
    assert trainer.global_step == 6  # 3 steps for each batch
    written = sorted(path.name for path in (tmp_path / "images").iterdir())
    assert written == ["photo__paint.png", "tall__paint.png"]


@pytest.mark.parametrize("init", ["content", "style", "noise", "file"])
def test_init(tmp_path, images, init):
    start = {"init": "content", "init_image": str(images["style2"])} if init == "file" else {"init": init}

    def result(out, seed=7):
        still = lambda params: torch.optim.SGD(params, lr=0.0)  # one step that moves nothing: the start is the result
        _, trainer = fit(out, images["content"], images["style"], steps=1, seed=seed, optimizer=still, **start)
        return results(trainer)["photo__paint"]

    pair = result(tmp_path)
    image, content = pair.image, pair.content
    if init == "content":
        assert torch.equal(image, content)
    elif init == "noise":
        assert image.std() > 0.2 and image.min() >= 0 and image.max() <= 1
        assert torch.equal(result(tmp_path / "again").image, image)
        assert not torch.equal(result(tmp_path / "other", seed=8).image, image)
    else:
        source = pair.styles[0] if init == "style" else load_image(images["style2"])
        assert image.shape == content.shape
        torch.testing.assert_close(image.mean((1, 2)), source.mean((1, 2)), atol=0.03, rtol=0)


def test_checkpoints_are_small_and_load_with_weights_only(tmp_path, images):
    from pytorch_lightning.callbacks import ModelCheckpoint

    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True, every_n_train_steps=2)
    model, _ = fit(tmp_path, images["content"], images["style"], steps=4, max_steps=2, backbone="vgg19_bn",
                   callbacks=[checkpoint])
    path = tmp_path / "ckpt" / "last.ckpt"
    state = torch.load(path, weights_only=True)
    assert state["state_dict"]["images"].numel() == 0  # no VGG weights (80 MB): the batch is in in_progress
    assert path.stat().st_size < 100_000  # a 32x27 image and Adam's two moments
    (entry,) = state["in_progress"]
    assert entry["names"] == ["photo__paint"] and entry["step"] == 2
    torch.testing.assert_close(entry["images"], model.images.detach())
    StyleTransfer.load_from_checkpoint(path, weights=None)  # loads with weights_only


@pytest.mark.parametrize("optimizer", ["adam", "lbfgs"])
def test_resume_continues_where_it_stopped(tmp_path, images, optimizer):
    make = {
        "adam": lambda params: torch.optim.Adam(params, lr=0.05),
        "lbfgs": lambda params: torch.optim.LBFGS(params, lr=1, max_iter=1, history_size=10),
    }[optimizer]
    (_, resumed), (_, straight) = resumed_and_straight(tmp_path, images["content"], images["style"], stop_at=3,
                                                       steps=6, init="noise", optimizer=make)
    assert resumed.global_step == 6
    assert_same_results(resumed, straight)


def test_resume_with_other_images_starts_the_batch_in_progress_again(tmp_path, images):
    from pytorch_lightning.callbacks import ModelCheckpoint

    fit(tmp_path, images["content"], images["style"], steps=4, max_steps=2,
        callbacks=[ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)])
    with pytest.warns(UserWarning, match=r"last.ckpt: 1 batch\(es\) in progress start again "
                                         r"\(photo__paint is not a pair of this run\)"):
        _, trainer = fit(tmp_path, images["content2"], images["style"], steps=4,
                         ckpt_path=str(tmp_path / "ckpt" / "last.ckpt"))
    assert list(collected(trainer)) == ["photo2__paint"] and trainer.global_step == 6


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"style_weight": -1.0}, r"^StyleTransfer\(style_weight=-1.0\) must be a finite number >= 0$"),
        ({"style_layers": {"relu1_1": -1.0}}, r"gives relu1_1 the weight -1.0; weights must be >= 0$"),
        ({"content_layers": []}, r"^StyleTransfer\(content_layers=\[\]\) is empty$"),
        ({"init": "nowhere.png"},
         r"^StyleTransfer\(init='nowhere.png'\) must be content, style or noise \(a starting "),
        ({"levels": 0}, r"^StyleTransfer\(levels=0\) must be a whole number >= 1$"),
        ({"style_loss": "wasserstain"},
         r"^StyleTransfer\(style_loss='wasserstain'\) must be one of gram, wasserstein, sliced$"),
        ({"plateau_tolerance": 1.5}, r"^StyleTransfer\(plateau_tolerance=1.5\) must be in \[0, 1\)$"),
        ({"plateau_window": 0}, r"^StyleTransfer\(plateau_window=0\) must be a whole number >= 1$"),
        ({"pooling": "average"}, r"^VGGFeatures\(pooling='average'\) must be max or avg$"),
        ({"backbone": "resnet50"}, r"^VGGFeatures\(backbone='resnet50'\) must be one of vgg19_bn, vgg19, vgg16$"),
    ],
)
def test_bad_model_options(kwargs, message):
    """Each class refuses its own bad arguments, in its own words."""
    with pytest.raises(StyleTransferError, match=message):
        StyleTransfer(**{"backbone": "vgg16", "weights": None, **kwargs})


def test_very_wide_content_and_a_much_larger_style(tmp_path, images):
    from helpers import write_image

    wide = write_image(tmp_path / "in" / "wide.png", size=(600, 40), seed=6)
    huge_style = write_image(tmp_path / "in" / "huge.png", size=(1500, 1200), seed=7)
    _, trainer = fit(tmp_path, wide, huge_style, steps=2, image_size=256)
    pair = results(trainer)["wide__huge"]
    assert pair.image.shape == (3, 17, 256) and pair.styles[0].shape == (3, 205, 256)
    assert (tmp_path / "images" / "wide__huge.png").is_file()


def test_a_blend_targets_the_weighted_sum_of_its_styles_grams(tmp_path, images):
    from lightning_style.losses import gram_matrix

    model, trainer = fit(tmp_path, images["content"], [images["style"], images["style2"]], steps=1, pairing="blend",
                         style_weights=[0.7, 0.3])
    (pair,) = results(trainer).values()
    assert pair.name == "photo__paint+paint2" and len(pair.styles) == 2
    grams = [gram_matrix(model.features(style[None])["relu3_1"]) for style in pair.styles]
    target = model.run.objective.style_target("relu3_1")["gram"][:, 0]
    torch.testing.assert_close(target, 0.7 * grams[0] + 0.3 * grams[1])
    assert (tmp_path / "images" / "photo__paint+paint2.png").is_file()


def test_compiled_vgg_gives_the_same_images(tmp_path, images):
    # a short net compiles fast
    kwargs = {"steps": 2, "style_layers": ["relu1_1", "relu2_1"], "content_layers": ["relu2_1"]}
    _, plain = fit(tmp_path / "plain", images["content"], images["style"], **kwargs)
    traced = []  # the VGG's first layer as torch.compile traces it (once) and as it runs it eagerly (never)

    class Traced(pl.Callback):
        def on_fit_start(self, trainer, pl_module):
            pl_module.features.net[0].register_forward_pre_hook(lambda *_: traced.append(torch.compiler.is_compiling()))

    _, compiled = fit(tmp_path / "compiled", images["content"], images["style"], compile=True, callbacks=[Traced()],
                      **kwargs)
    assert traced and all(traced)
    assert_same_results(compiled, plain, atol=1e-5)


class CountHostReads(pl.Callback):
    """Counts, during global steps ``first`` to ``last - 1``, the calls that make the host wait for the device
    (on a GPU): ``Tensor.item``, ``tolist``, ``bool()``, ``float()``, ``int()``."""

    READS = ("item", "tolist", "__bool__", "__float__", "__int__")

    def __init__(self, first: int, last: int) -> None:
        self.first, self.last, self.count, self.saved = first, last, 0, {}

    def on_train_batch_start(self, trainer, *args) -> None:
        if trainer.global_step == self.first:
            self.optimizers = trainer.optimizers
            for name in self.READS:
                self.saved[name] = original = getattr(torch.Tensor, name)
                setattr(torch.Tensor, name, self._counted(original))

    def _counted(self, original):
        def read(tensor, *args, **kwargs):
            # Adam keeps its step counters on the host (unless capturable), so reading them does not wait.
            host = any(tensor is state.get("step")
                       for optimizer in self.optimizers for state in optimizer.state.values())
            self.count += not host
            return original(tensor, *args, **kwargs)
        return read

    def on_train_batch_end(self, trainer, *args) -> None:
        if trainer.global_step == self.last:
            self.restore()

    def restore(self) -> None:
        for name, original in self.saved.items():
            setattr(torch.Tensor, name, original)
        self.saved = {}


@pytest.mark.parametrize("check_every, bar_every, at_most", [(10, 10, 4), (1, 1, None)], ids=["default", "every-step"])
def test_a_step_never_waits_on_the_host(tmp_path, images, check_every, bar_every, at_most):
    """Over 20 steps, the defaults read from the device only at the two NaN checks and the two loss updates of the
    progress bar (every 10 steps each); checking every step reads at every step."""
    from lightning_style.callbacks import StepProgressBar

    counter = CountHostReads(first=5, last=25)
    try:
        fit(tmp_path, images["content"], images["style"], steps=40, check_every_n_steps=check_every,
            callbacks=[counter, StepProgressBar(metrics_every_n_steps=bar_every)],
            trainer_kwargs={"enable_progress_bar": True, "log_every_n_steps": 50})
    finally:
        counter.restore()
    if at_most is None:
        assert counter.count >= 20  # at least the check of every step
    else:
        assert counter.count <= at_most, counter.count
