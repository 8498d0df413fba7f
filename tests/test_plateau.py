"""The opt-in plateau stop: a batch ends once its loss stops improving; its remaining steps cost nothing."""

import pytorch_lightning as pl
import torch

from lightning_style.plateau import Plateau

from helpers import assert_same_results, collected, fit, resumed_and_straight


def test_the_rule():
    plateau = Plateau(tolerance=0.1, window=20)
    losses = {10: 100.0, 20: 80.0, 30: 70.0, 40: 66.0, 50: 64.0}
    stops = {step: plateau.update(step, loss) for step, loss in losses.items()}
    # at 40: 66 against 80 (20 steps before) is 17.5% better; at 50: 64 against 70 is 8.6% better: stop
    assert stops == {10: False, 20: False, 30: False, 40: False, 50: True} and plateau.stopped_at == 50
    assert plateau.update(60, 1.0)  # once stopped, stopped
    plateau.start_batch()
    assert plateau.stopped_at is None and plateau.history == []


def test_off_by_default():
    plateau = Plateau()
    assert not any(plateau.update(step, 1.0) for step in range(10, 1000, 10))


def test_after_the_stop_no_forward_and_no_change(tmp_path, images):
    from lightning_style import StyleTransfer

    model = StyleTransfer(backbone="vgg16", weights=None, plateau_tolerance=0.9, plateau_window=4,
                          check_every_n_steps=2)
    forwards, at_stop = [], []
    model.features.register_forward_hook(lambda *args: forwards.append(1))

    class AtStop(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, *args) -> None:
            if pl_module.run.plateau.stopped_at is not None and not at_stop:
                at_stop.append(pl_module.images.detach().clone())

    _, trainer = fit(tmp_path, images["content"], images["style"], steps=30, model=model, callbacks=[AtStop()])
    stopped = model.run.plateau.stopped_at
    assert stopped is not None and 4 <= stopped < 30 and trainer.global_step == 30
    assert len(forwards) == 2 + stopped  # the targets (content, style), then one forward per step until the stop
    assert torch.equal(at_stop[0], model.images.detach())  # no optimiser step after the stop (Adam's momentum)
    assert (tmp_path / "images" / "photo__paint.png").is_file()
    assert torch.equal(collected(trainer)["photo__paint"], model.images.detach()[0])


def test_resume_after_the_stop_is_exact(tmp_path, images):
    kwargs = {"steps": 30, "plateau_tolerance": 0.9, "plateau_window": 4, "check_every_n_steps": 2, "init": "noise"}
    (resumed, resumed_trainer), (straight, straight_trainer) = resumed_and_straight(
        tmp_path, images["content"], images["style"], stop_at=20, **kwargs)
    assert resumed.result.stopped_at == straight.result.stopped_at < 20
    assert_same_results(resumed_trainer, straight_trainer)
