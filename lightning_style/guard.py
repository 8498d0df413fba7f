"""``FiniteGuard``: finds NaN or infinity in the images being optimised without making the host wait for the
device at every step, and puts the images back to the last ones that were checked good."""

import torch
from torch import Tensor

from .errors import NonFiniteError


class FiniteGuard:
    """A flag on the device that folds in every finiteness test since the last check, and a copy of the images at
    that check. Reading the flag (``check``) is the only host synchronisation; the caller decides how often."""

    def __init__(self) -> None:
        self.flag: Tensor | None = None  # every test since the last check passed (on the device)
        self.good: tuple[int, Tensor] | None = None  # (global steps done, images) at the last good check
        self.batch_start = 0  # the global step at which the batch in progress started

    def start_batch(self, step: int) -> None:
        """A new batch of images: nothing of it checked yet."""
        self.flag, self.good, self.batch_start = None, None, step

    def reset(self) -> None:
        """A new fit (or a resume): nothing checked in it yet."""
        self.flag, self.good = None, None

    def note(self, finite: Tensor) -> None:
        """Fold ``finite`` (a boolean tensor) into the flag; it is read at the next check."""
        self.flag = finite if self.flag is None else self.flag & finite

    def keep(self, images: Tensor, steps_done: int) -> None:
        """Remember ``images``, after ``steps_done`` global steps, as good."""
        self.flag, self.good = None, (steps_done, images.detach().clone())

    def check(self, images: Tensor, steps_done: int, losses: dict[str, Tensor]) -> None:
        """Keep ``images`` as good if they and every noted test are finite; otherwise put the last good ones back
        into ``images`` and raise :class:`NonFiniteError`, naming the first loss in ``losses`` that is not finite."""
        finite = torch.isfinite(images).all()
        if bool(finite if self.flag is None else finite & self.flag):
            self.keep(images, steps_done)
            return
        if self.good is None:  # no good images of this run to go back to
            raise NonFiniteError("the images are NaN or infinite (lower the loss weights or the learning rate)")
        step, good = self.good
        with torch.no_grad():
            images.copy_(good)
        self.flag = None  # these images are good: later checks start from them
        bad = [key for key in ("loss", "content", "style", "tv") if key in losses and not losses[key].isfinite().all()]
        what = f"train/{bad[0]}" if bad else "an image"
        raise NonFiniteError(f"{what} became NaN or infinite between global steps {step} and {steps_done}; stopped "
                             f"with the images of step {step}, the last check (lower the loss weights or the learning "
                             "rate)", images_step=step if step > self.batch_start else None)  # a start is no result
