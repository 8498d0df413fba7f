"""A callback for console-script runs in the tests: saves each finished pair's float image to
``$LIGHTNING_STYLE_TEST_RESULTS/<name>.pt``, so that runs can be compared beyond 8-bit PNGs."""

import os
from pathlib import Path

import torch
from pytorch_lightning.callbacks import Callback


class SaveFinished(Callback):
    def on_train_batch_end(self, trainer, pl_module, *args) -> None:
        folder = Path(os.environ["LIGHTNING_STYLE_TEST_RESULTS"])
        folder.mkdir(parents=True, exist_ok=True)
        for pair in pl_module.result or ():
            torch.save(pair.image.cpu().clone(), folder / f"{pair.name}.pt")


def load_results(folder: Path) -> dict[str, torch.Tensor]:
    return {path.stem: torch.load(path, weights_only=True) for path in sorted(Path(folder).glob("*.pt"))}
