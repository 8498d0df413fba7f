"""Content/style pairs from image files, streamed to the module in fixed-size batches: ``PairDataModule``."""

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from lightning_utilities.core.rank_zero import rank_zero_warn
from pytorch_lightning import LightningDataModule
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from .errors import StyleTransferError
from .images import displayed_size, image_files, load_image, open_image, resized_shape
from .pairs import PairBatch, PairFiles, pair_name, pair_up
from .plan import Plan, plan


class _PlanItems(IterableDataset):
    """This process's :class:`PairBatch` of each global step from ``start`` to the plan's end; the first item and
    each batch's first carry pixels. Loader workers share the steps round-robin, which keeps their order.

    An iterable, so that Lightning never splits it with a distributed sampler: the plan already did."""

    def __init__(self, files: PairFiles, schedule: Plan, pairs: list[int], rank: int) -> None:
        self.files, self.schedule, self.pairs, self.rank = files, schedule, pairs, rank
        self.start = schedule.base

    def __len__(self) -> int:
        return self.schedule.end

    def __iter__(self) -> Iterator[PairBatch]:
        worker = get_worker_info()
        first, stride = (worker.id, worker.num_workers) if worker else (0, 1)
        for step in range(self.start + first, self.schedule.end, stride):
            k, within = self.schedule.at(self.rank, step)
            indices = [self.pairs[i] for i in self.schedule.batches[self.rank][k]]
            if step == self.start or within == 0:
                yield self.files.decode(indices, within, self.schedule.steps)
            else:
                yield PairBatch(tuple(self.files.names[i] for i in indices), within, self.schedule.steps)


class _PlanLoader(DataLoader):
    """Starts at the trainer's current step (a resumed run picks up where its checkpoint stopped). Lightning keeps
    the step count of a resumed epoch only for a loader it can restore; this one needs nothing restored."""

    def __init__(self, items: _PlanItems, trainer, **kwargs) -> None:
        super().__init__(items, batch_size=None, **kwargs)
        self._trainer = trainer

    def __iter__(self):
        self.dataset.start = max(self._trainer.global_step, self.dataset.schedule.base)
        return super().__iter__()

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state_dict: dict) -> None:
        pass


class PairDataModule(LightningDataModule):
    """Content/style pairs from image files or folders, streamed to the module in batches of one image shape.

    Every file's header is checked when the module is created (before any compute); pixels are decoded when
    their batch comes up, so memory depends on the batch, not on the number of pairs. With several processes,
    each optimises its own batches (see :mod:`lightning_style.plan`); a resumed run skips the finished pairs.

    Args:
        content: a content image, a folder of them, or a list of files and folders.
        style: a style image, a folder of them, or a list of files and folders.
        pairing: ``product`` (every content with every style), ``zip`` (the i-th content with the i-th style;
            a single image on one side goes with every image on the other) or ``blend`` (every content with
            one blend of all the styles, weighted by ``style_weights``).
        image_size: the content images' longer side in pixels (the aspect ratio is kept).
        style_scale: the style images' longer side relative to ``image_size``; below 1 gives finer brush strokes,
            above 1 coarser ones.
        style_weights: with ``pairing: blend``, one weight per style image (normalised to sum to 1); default equal.
        masks: with ``pairing: blend``, one mask image per style image, instead of weights: each style is
            painted where its mask is white (grey: partly), and where no mask is white the content gets no
            style. Masks are resized to each content image, so they must have its aspect ratio.
        batch_size: pairs optimised together (pairs of one image shape; see the README for the measured choice).
        steps: steps each batch is optimised for; the command line sets it from ``--model.steps``.
        num_workers: processes that decode the next batch while one is optimised (0: decode in the main process).
    """

    def __init__(
        self,
        content: str | list[str],
        style: str | list[str],
        pairing: Literal["product", "zip", "blend"] = "product",
        image_size: int = 512,
        style_scale: float = 1.0,
        style_weights: list[float] | None = None,
        masks: str | list[str] | None = None,
        batch_size: int = 4,
        steps: int = 500,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        if not isinstance(image_size, int) or image_size <= 0:
            raise StyleTransferError(f"--data.image_size must be a positive number of pixels, got {image_size!r}")
        if not style_scale > 0:
            raise StyleTransferError(f"--data.style_scale must be positive, got {style_scale!r}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise StyleTransferError(f"--data.batch_size must be at least 1, got {batch_size!r}")
        contents, styles = image_files(content, "content"), image_files(style, "style")
        weights = [1.0] * len(styles) if style_weights is None else list(style_weights)
        if style_weights is not None and pairing != "blend":
            raise StyleTransferError("--data.style_weights needs --data.pairing blend")
        if len(weights) != len(styles) or not all(w >= 0 for w in weights) or not sum(weights) > 0:
            raise StyleTransferError(f"--data.style_weights must be {len(styles)} weights >= 0 (one per style image) "
                                     f"with a positive sum, got {style_weights}")
        self.sources = pair_up(contents, styles, pairing)
        self.style_weights = tuple(w / sum(weights) for w in weights) if pairing == "blend" else (1.0,)
        self.names = [pair_name(c, ss) for c, ss in self.sources]
        if len(set(self.names)) < len(self.names):
            seen = set()
            twice = next(name for name in self.names if name in seen or seen.add(name))
            raise StyleTransferError(f"two pairs are both named {twice!r}: rename one of the images")
        self.image_size, self.style_scale = image_size, style_scale
        self.batch_size, self.steps, self.num_workers = batch_size, steps, num_workers
        self.masks = self._check_masks(masks, pairing, styles, style_weights)
        self.sizes: dict[Path, tuple[int, int]] = {}
        for path, role in self._files():
            with open_image(path, role) as image:
                self.sizes[path] = displayed_size(image)
        for mask in self.masks:
            for content in contents:
                (mw, mh), (cw, ch) = self.sizes[mask], self.sizes[content]
                if abs(mw / mh - cw / ch) > 0.02 * cw / ch:
                    raise StyleTransferError(f"mask {mask}: {mw}x{mh} px, but content {content} is {cw}x{ch} px: a mask "
                                             "needs the content's aspect ratio (it is resized to the content)")
        self.files = PairFiles(tuple(self.names), tuple(self.sources), self.style_weights, tuple(self.masks),
                               image_size, self.style_size)
        self.finished: set[str] = set()  # pairs finished by the runs before a resume
        self.plan: Plan | None = None  # this run's plan, over the pairs not finished before
        self._pending: list[int] = list(range(len(self.names)))
        self._resumed: dict | None = None

    @staticmethod
    def _check_masks(masks, pairing: str, styles: list[Path], style_weights) -> list[Path]:
        if masks is None:
            return []
        masks = [Path(mask).expanduser() for mask in ([masks] if isinstance(masks, (str, Path)) else masks)]
        if pairing != "blend":
            raise StyleTransferError("--data.masks needs --data.pairing blend (each content with all the styles, each in its mask)")
        if style_weights is not None:
            raise StyleTransferError("--data.masks and --data.style_weights do not go together: a mask's grey level sets its style's strength")
        if len(masks) != len(styles):
            raise StyleTransferError(f"--data.masks must be one mask per style image: got {len(masks)} masks and {len(styles)} styles")
        return masks

    def _files(self) -> list[tuple[Path, str]]:
        return list(dict.fromkeys(
            [(c, "content") for c, _ in self.sources] + [(s, "style") for _, ss in self.sources for s in ss]
            + [(m, "mask") for m in self.masks]
        ))

    @property
    def style_size(self) -> int:
        """The style images' longer side in pixels."""
        return max(1, round(self.image_size * self.style_scale))

    def check_min_size(self, min_size: int) -> None:
        """Raise if any image, once resized, has a side shorter than ``min_size`` pixels."""
        for path, role in self._files():
            if role == "mask":
                continue
            height, width = resized_shape(*self.sizes[path], self.image_size if role == "content" else self.style_size)
            if min(height, width) < min_size:
                raise_option = "--data.image_size" if role == "content" else f"--data.style_scale (now {self.style_scale})"
                raise StyleTransferError(
                    f"{role} {path}: {width}x{height} px once resized, but the chosen layers (and --model.levels) "
                    f"need at least {min_size} px on each side (raise {raise_option} or use a less elongated image)"
                )

    def shapes(self) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """``(height, width)`` of each pair's content (in pair order) and of each style image once resized, read
        from the headers, without decoding."""
        contents = [resized_shape(*self.sizes[content], self.image_size) for content, _ in self.sources]
        styles = [resized_shape(*self.sizes[path], self.style_size) for path, role in self._files() if role == "style"]
        return contents, styles

    # --- the plan and the loader --------------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        """Decode the masks (shared by every pair) to refuse a black one before any compute."""
        images = {(path, "mask"): load_image(path, role="mask") for path in self.masks}
        if images:
            self.files.masks_for(images, (8, 8))

    def _plan(self, key: dict, before: set[str], base: int) -> tuple[list[int], Plan]:
        """The plan of a run with ``key`` over the pairs not in ``before``, from global step ``base``."""
        pending = [i for i, name in enumerate(self.names) if name not in before]
        contents = [resized_shape(*self.sizes[self.sources[i][0]], key["image_size"]) for i in pending]
        return pending, plan(contents, key["batch_size"], key["world"], key["steps"], base)

    def _key(self, world: int) -> dict:
        digest = hashlib.sha1("\n".join(self.names).encode()).hexdigest()
        return {"world": world, "batch_size": self.batch_size, "steps": self.steps, "image_size": self.image_size,
                "pairs": digest}

    def state_dict(self) -> dict:
        """What a resumed run needs to know which pairs are finished: the plan's key and first step, and the pairs
        finished before it (none unless an earlier resume changed the plan). Nothing per pair otherwise."""
        if self.plan is None:
            return {}
        return {"key": self._key(self.plan.world), "base": self.plan.base, "before": sorted(self.finished)}

    def load_state_dict(self, state_dict: dict) -> None:
        self._resumed = state_dict or None

    def train_dataloader(self) -> DataLoader:
        """One item per step for this process, from the current step to the end of its last batch."""
        trainer = self.trainer
        key, step = self._key(trainer.world_size), trainer.global_step
        resumed, self.finished, base = self._resumed, set(), 0
        if resumed and resumed["key"]["pairs"] == key["pairs"]:
            self.finished = set(resumed["before"])
            if resumed["key"] == key:
                base = resumed["base"]  # the same plan: the step count says which pairs are finished
            else:  # another plan: the old one says which pairs it finished; the batches in progress start again
                pending, old = self._plan(resumed["key"], self.finished, resumed["base"])
                self.finished |= {self.names[pending[i]] for i in old.finished(step)}
                base = step
                rank_zero_warn(f"--ckpt_path: the batch size, steps, image size or number of processes changed; "
                               f"{len(self.finished)} finished pairs are kept, the batches in progress start again")
        elif resumed:
            base = step
            rank_zero_warn("--ckpt_path: the checkpoint was made for other pairs; every pair is optimised")
        self._pending, self.plan = self._plan(key, self.finished, base)
        items = _PlanItems(self.files, self.plan, self._pending, trainer.global_rank)
        return _PlanLoader(items, trainer, num_workers=self.num_workers)

    def decode(self, pairs: list[int]) -> PairBatch:
        """The pixels of the pairs with these indices (in ``names``), as their batch's first step gets them."""
        return self.files.decode(pairs, 0, self.steps)

    def progress(self, step: int) -> tuple[int, int]:
        """``(pairs finished, pairs in all)`` at global ``step``, over every process."""
        done = len(self.finished) + (self.plan.finished_count(step) if self.plan else 0)
        return done, len(self.names)
