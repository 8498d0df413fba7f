"""The batch in progress as one object (``BatchRun``) and what observers see of it (``BatchResult``).

A ``BatchRun`` owns everything that lives as long as one batch of pairs: the image parameter, its optimiser, the
objective (the targets), the pyramid schedule, the NaN guard and the plateau stop. The module drives it from
Lightning's hooks; callbacks never touch it. They read ``BatchResult`` records: the finished batch, published
once, or a snapshot of the batch in progress (the images of its last good check).
"""

import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .color import keep_content_colours
from .flow import PreviousFrames
from .guard import FiniteGuard
from .in_progress import load_optimizer_state, pack, unpack
from .objective import StyleObjective
from .pairs import PairBatch
from .plateau import Plateau

LOSS_KEYS = ("loss", "content", "style", "tv", "temporal")
OptimizerFactory = Callable[[list[nn.Parameter]], torch.optim.Optimizer]


@dataclass(frozen=True)
class Pyramid:
    """Coarse to fine: a batch's first ``level_steps`` steps at 1/2^(levels-1) of the size, the next
    ``level_steps`` at twice that, ..., the rest at full size.

    >>> [Pyramid(levels=3, level_steps=2).factor_at(step) for step in range(6)]
    [4, 4, 2, 2, 1, 1]
    """

    levels: int = 1
    level_steps: int = 100

    @property
    def factors(self) -> tuple[int, ...]:
        """Every level's downsampling factor, full size first."""
        return tuple(2**k for k in range(self.levels))

    def factor_at(self, step: int) -> int:
        """How many times the images are downsampled at a batch's ``step`` (1 at full size)."""
        level = min(step // self.level_steps, self.levels - 1)
        return 2 ** (self.levels - 1 - level)

    def starts_level(self, step: int) -> bool:
        """True at the first step of every level but the first."""
        return 0 < step <= self.level_steps * (self.levels - 1) and step % self.level_steps == 0


@dataclass(frozen=True)
class PairResult:
    """One pair of a :class:`BatchResult`: its image (``(3, H, W)`` in ``[0, 1]``), inputs and per-pair losses."""

    name: str
    image: Tensor
    content: Tensor
    styles: tuple[Tensor, ...]
    losses: Mapping[str, float]


@dataclass(frozen=True)
class BatchResult:
    """A batch's images at one moment, as they are written and logged (colour preservation applied).

    ``complete``: the batch's final images (published once, when its last step is taken); otherwise a snapshot of
    the batch in progress at its last good check. ``step`` counts the steps the images had within the batch (of its
    ``steps``),
    ``global_step`` the trainer's steps when they had them; ``losses`` holds ``(B,)`` tensors (empty in a
    snapshot); ``stopped_at`` the step at which the plateau stop ended the batch early, if it did.
    """

    names: tuple[str, ...]
    images: Tensor
    contents: Tensor
    styles: tuple[tuple[Tensor, ...], ...]
    step: int
    steps: int
    global_step: int
    complete: bool
    losses: Mapping[str, Tensor] = field(default_factory=dict)
    stopped_at: int | None = None

    def __iter__(self) -> Iterator[PairResult]:
        losses = {key: value.tolist() for key, value in self.losses.items()}
        for row, name in enumerate(self.names):
            yield PairResult(name, self.images[row], self.contents[row], self.styles[row],
                             {key: values[row] for key, values in losses.items()})


def initial_images(batch: PairBatch, init: str, seed: int, previous: PreviousFrames | None = None) -> Tensor:
    """Each pair's starting image: a clip's previous result warped onto its frame when there is one (Ruder et al.
    2016), else the data's ``init`` image when the batch has one, else its content, its first style (resized to the
    content) or noise (seeded by ``seed`` and the pair's name, so that a pair's start depends neither on its batch
    nor on the order)."""
    if previous is not None:
        # Ruder et al. start from the whole warped result; where the flow cannot be trusted (the ground a moving
        # object uncovers) the warped result smears the object, so those pixels start as a still would.
        own = initial_images(batch, init, seed)
        warm = previous.weights * previous.images + (1 - previous.weights) * own
        return torch.where(previous.linked[:, None, None, None], warm, own).clamp(0, 1)
    if batch.init is not None:
        return batch.init.clone()
    if init == "content":
        return batch.contents.clone()
    if init == "noise":
        generators = [torch.Generator().manual_seed(seed + zlib.crc32(name.encode())) for name in batch.names]
        return torch.stack([torch.rand(content.shape, generator=generator)
                            for generator, content in zip(generators, batch.contents, strict=True)]).to(batch.contents)
    size = batch.contents.shape[-2:]
    return torch.cat([F.interpolate(styles[0][None], size=size, mode="bilinear", antialias=True)
                      for styles in batch.styles]).clamp(0, 1)


class BatchRun:
    """One batch of pairs being optimised: ``(B, 3, H, W)`` images (the module's only parameter) and their optimiser,
    the objective, the pyramid, the NaN guard and the plateau stop.

    Per step the module calls :meth:`begin_step`, :meth:`loss` (in ``training_step``), :meth:`before_step` and the
    optimiser step, then :meth:`after_step`, which returns the :class:`BatchResult` after the batch's last step.

    Args:
        batch: the batch's first item (with pixels): names, contents, styles, the step it starts at and its steps.
        objective: the batch's targets and losses; ``None`` for a process that idles for the batch.
        init: how a new batch starts (see :func:`initial_images`), from ``seed``.
        restored: a batch that goes on after ``step`` steps (a resume): its checkpoint entry, checked first
            (:func:`~lightning_style.in_progress.unpack`; ``where`` names the checkpoint in its errors).
        new_optimizer: builds the optimiser over a list of parameters.
        pyramid, plateau: the coarse-to-fine schedule and the early stop.
        check_every_n_steps: read the NaN flag every this many global steps (and at the batch's end).
        luminance: results keep the content's colours (``preserve_color: luminance``).
        global_step: the trainer's step count when this item comes.
    """

    def __init__(self, batch: PairBatch, objective: StyleObjective | None, *, init: str, seed: int,
                 restored: dict | None, where: str, new_optimizer: OptimizerFactory, pyramid: Pyramid,
                 plateau: Plateau, check_every_n_steps: int, luminance: bool, global_step: int) -> None:
        self.names, self.contents, self.styles = batch.names, batch.contents, tuple(batch.styles)
        self.step, self.steps = batch.step, batch.steps
        self.objective, self.pyramid, self.plateau = objective, pyramid, plateau
        self.check_every_n_steps, self.luminance = check_every_n_steps, luminance
        state = None
        if not self.names:  # this process idles for the batch: one dummy pixel keeps its step count in line
            images = torch.zeros(1, 3, 1, 1, device=batch.contents.device)
        elif batch.step == 0:
            images = initial_images(batch, init, seed, objective.previous)
        else:  # the first step of a resumed run, in the middle of a batch: the checkpoint's images go on
            probe = new_optimizer([nn.Parameter(torch.zeros(1))])  # its class and history size, for the checks
            images, state, plateau_state = unpack(restored, where, self.names, self.step, self.contents.shape, probe)
            images = images.to(self.contents.device)
            plateau.load_state_dict(plateau_state)
        self.images = nn.Parameter(images)
        self.optimizer = new_optimizer([self.images])
        if state is not None:
            load_optimizer_state(self.optimizer, state, where)  # torch moves the state to the images' device
        self.guard = FiniteGuard()
        self.guard.start_batch(global_step - batch.step)
        self.losses: dict[str, Tensor] = {}  # per pair, of the last step that computed them
        self._snapshot: BatchResult | None = None  # of the last good check, made when first asked for

    @property
    def idle(self) -> bool:
        """This process has no pair in the batch, or the batch stopped early: its steps cost nothing."""
        return not self.names or self.plateau.stopped_at is not None

    def begin_step(self) -> None:
        if self.pyramid.starts_level(self.step):
            self.optimizer.state.clear()  # a new level, a new loss: the optimiser starts afresh

    def loss(self) -> tuple[Tensor, dict[str, Tensor]]:
        """The sum of the per-pair losses (each pair's gradient is its own) and the per-pair terms."""
        if self.idle:
            return self.images.sum() * 0.0, {}
        losses = self.objective(self.images, self.pyramid.factor_at(self.step), self.step)
        self.losses = {key: losses[key].detach() for key in LOSS_KEYS}
        total = losses["loss"].sum()
        self.guard.note(torch.isfinite(total))
        return total, losses

    def before_step(self, global_step: int) -> None:
        if self.guard.good is None:
            self.guard.keep(self.images, global_step)  # a batch's first step (or a resume's): good images

    def after_step(self, global_step: int) -> BatchResult | None:
        """Clamp the images to ``[0, 1]`` (before any checkpoint can see them), read the NaN flag when a check is
        due (a :class:`~lightning_style.NonFiniteError` puts the last good images back), update the plateau stop;
        the finished batch's result after its last step. ``global_step``: the trainer's steps after this one."""
        self.step += 1
        last = self.step == self.steps
        if not self.idle:
            self.guard.note(torch.isfinite(self.images).all())  # before the clamp, which would turn inf into 1
            with torch.no_grad():
                self.images.clamp_(0, 1)
            if last or global_step % self.check_every_n_steps == 0:
                self.check(global_step)
                if self.plateau.tolerance and self.pyramid.factor_at(self.step - 1) == 1:  # at full size only
                    self.plateau.update(self.step, float(self.losses["loss"].sum()))  # a host read
        return self._record(self.images.detach(), self.step, global_step, complete=True) if last else None

    def check(self, global_step: int) -> None:
        """Raise :class:`~lightning_style.NonFiniteError`, with the images of the last good check put back, if a
        loss or an image went NaN or infinite since that check; else remember these images as good, as those
        after ``global_step`` trainer steps. One host synchronisation."""
        if self.names:
            self.guard.check(self.images, global_step, self.losses)

    def entry(self, global_step: int) -> dict:
        """This batch in progress for a checkpoint (checked for NaN first); an empty entry once it finished."""
        if not self.names or self.step == self.steps:
            return pack((), 0, self.images, None, {})
        self.check(global_step)
        return pack(self.names, self.step, self.images, self.optimizer, self.plateau.state_dict())

    def snapshot(self) -> BatchResult | None:
        """The batch in progress at its last good check (``None`` before its first step)."""
        if not self.names or self.guard.good is None:
            return None
        global_step, images = self.guard.good
        if self._snapshot is None or self._snapshot.global_step != global_step:  # observers may ask at every step
            self._snapshot = self._record(images, global_step - self.guard.batch_start, global_step, complete=False)
        return self._snapshot

    def _record(self, images: Tensor, step: int, global_step: int, *, complete: bool) -> BatchResult:
        images = images[: len(self.names)]  # an idle process's one dummy pixel is no result
        if self.luminance and self.names:
            images = torch.stack([keep_content_colours(image, content.to(image))
                                  for image, content in zip(images, self.contents, strict=True)])
        return BatchResult(self.names, images.clone(), self.contents, self.styles, step, self.steps, global_step,
                           complete, dict(self.losses) if complete else {}, self.plateau.stopped_at)
