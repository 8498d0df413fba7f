"""The GPU lane: ``python -m pytest -m gpu`` on a machine with CUDA (``benchmarks/gpu_report.py`` runs it first).
Every test here is skipped without CUDA."""

import pytest
import torch

from lightning_style import StyleTransferError
from lightning_style.resources import STYLE_GB_PER_MEGAPIXEL, bytes_per_pixel

from helpers import ROOT, fit

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]
EXAMPLES = (ROOT / "examples/content/chelsea.png", ROOT / "examples/style/swirls.png")
GPU = {"accelerator": "gpu", "devices": 1}
LBFGS = {"optimizer": lambda params: torch.optim.LBFGS(params, lr=1.0, max_iter=1, history_size=10)}


@pytest.mark.parametrize("optimizer", ["adam", "lbfgs"])
def test_a_cuda_fit_keeps_everything_on_the_gpu(tmp_path, optimizer):
    model, trainer = fit(tmp_path, *EXAMPLES, steps=8, image_size=128, trainer_kwargs=GPU,
                         **(LBFGS if optimizer == "lbfgs" else {}))
    assert model.images.device.type == "cuda" and model.images.isfinite().all()
    targets = [*model.run.objective.content_targets.values(),
               *(tensor for target in model.run.objective.style_targets.values() for tensor in target.values())]
    assert targets and all(tensor.device.type == "cuda" for tensor in targets)  # content and style targets
    state = [value for s in trainer.optimizers[0].state.values() for value in s.values() if torch.is_tensor(value)]
    assert state and all(value.device.type == "cuda" for value in state if value.dim() > 0)
    assert (tmp_path / "images" / "chelsea__swirls.png").is_file()


def test_mixed_precision_is_finite_and_close_to_full_precision(tmp_path):
    results = {}
    for precision in ["32-true", "bf16-mixed", "16-mixed"]:
        model, trainer = fit(tmp_path / precision, *EXAMPLES, steps=20, image_size=128,
                             trainer_kwargs={**GPU, "precision": precision})
        results[precision] = (model.images.detach().float(), trainer.callback_metrics["train/loss"].item())
    image, loss = results["32-true"]
    for precision in ["bf16-mixed", "16-mixed"]:
        low_image, low_loss = results[precision]
        assert low_image.isfinite().all()
        assert abs(low_loss - loss) < 0.05 * loss and (low_image - image).abs().mean() < 0.03, precision


@pytest.mark.parametrize("style_loss", ["wasserstein", "sliced"])
def test_the_other_style_losses_on_cuda_in_bf16_stay_close_to_float32(tmp_path, style_loss):
    results = {}
    for precision in ["32-true", "bf16-mixed"]:
        model, _ = fit(tmp_path / precision, *EXAMPLES, steps=20, image_size=128, style_loss=style_loss,
                       trainer_kwargs={**GPU, "precision": precision})
        assert model.images.isfinite().all() and model.result.losses["style"].dtype == torch.float32
        results[precision] = model.images.detach()
    assert (results["bf16-mixed"] - results["32-true"]).abs().mean() < 0.03


def test_lbfgs_with_16_mixed_is_refused_at_start_up(tmp_path):
    with pytest.raises(StyleTransferError, match="L-BFGS cannot run with .*16-mixed"):
        fit(tmp_path, *EXAMPLES, steps=2, image_size=64, trainer_kwargs={**GPU, "precision": "16-mixed"}, **LBFGS)
    assert not (tmp_path / "images").exists()


def test_tf32_matrix_products_stay_close_to_float32(tmp_path):
    results = {}
    for precision in ["highest", "high"]:
        torch.set_float32_matmul_precision(precision)
        try:
            model, _ = fit(tmp_path / precision, *EXAMPLES, steps=20, image_size=128, trainer_kwargs=GPU)
        finally:
            torch.set_float32_matmul_precision("highest")
        results[precision] = model.images.detach()
    assert (results["high"] - results["highest"]).abs().mean() < 0.01


@pytest.mark.parametrize("option", ["channels_last", "compile", "checkpointing"])
def test_speed_and_memory_options_give_the_default_images(tmp_path, option):
    default, _ = fit(tmp_path / "default", *EXAMPLES, steps=5, image_size=96, trainer_kwargs=GPU)
    other, _ = fit(tmp_path / option, *EXAMPLES, steps=5, image_size=96, trainer_kwargs=GPU, **{option: True})
    torch.testing.assert_close(other.images.detach(), default.images.detach(), atol=2e-3, rtol=0)


def test_peak_gpu_memory_is_within_the_memory_estimate(tmp_path):
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    model, _ = fit(tmp_path, *EXAMPLES, steps=3, image_size=512, backbone="vgg19_bn", trainer_kwargs=GPU)
    peak = torch.cuda.max_memory_allocated()
    content, style = model.images[0, 0].numel(), model.run.styles[0][0][0].numel()
    estimate = bytes_per_pixel(model.features) * content + STYLE_GB_PER_MEGAPIXEL * 1e3 * style  # check_memory's sum
    assert peak < estimate, (peak, estimate)  # the estimate counts float32 activations: it errs on the safe side


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_two_gpus_give_the_images_of_one(tmp_path, hed_weights):
    from test_ddp import assert_same_pairs
    from test_ddp import fit as fit_cli

    args = ["--data.content", str(ROOT / "examples/content"), "--data.batch_size", "1", "--data.steps", "4",
            "--trainer.accelerator", "gpu", "--model.weights", str(hed_weights)]
    assert_same_pairs(fit_cli(tmp_path, "two", 2, *args), fit_cli(tmp_path, "one", 1, *args))
