"""Content/style pairs from image files, streamed to the module in fixed-size batches: ``PairDataModule``."""

import dataclasses
from collections.abc import Collection, Iterable, Mapping
from pathlib import Path
from typing import Literal

from lightning_utilities.core.rank_zero import rank_zero_warn
from pytorch_lightning import LightningDataModule

from .clip_frames import check_frame_sizes, expand, frame_chains, kept_frames
from .errors import OptionError, StyleTransferError
from .images import displayed_size, image_files, load_image, open_image, resized_shape
from .in_progress import check_plan_state
from .pairs import PairBatch, PairFiles, mask_files, pair_name, pair_up
from .plan import Batch, Plan, add_chains
from .plan_loader import PlanItems, PlanLoader
from .record import difference, fingerprint, plain
from .shards import find_shard
from .video import VIDEO_SUFFIXES, ClipInfo, frame_shape, is_clip, probe_clip

DATA = "PairDataModule"


class PairDataModule(LightningDataModule):
    """Content/style pairs from image files or folders, streamed to the module in batches of one image shape.

    Every file's header is checked and its fingerprint taken when the module is created (before any compute);
    pixels are decoded when their batch comes up, so memory depends on the batch, not on the number of pairs.
    With several processes, each optimises its own batches (see :mod:`lightning_style.plan`). Only the pairs
    that are not done are planned (:meth:`leave_out`, which :class:`~lightning_style.callbacks.ImageWriter`
    calls with what the output folder holds); a resumed checkpoint's batches in progress come first.

    Args:
        content: a content image or clip (``.mp4``, ``.mov``, ``.mkv``, ``.webm``, ``.avi``), a folder of them, or a
            list of files and folders. A clip's frames are its pairs, ``<clip>__<style>/frame-00001`` ..., each
            optimised after the one before (see :mod:`lightning_style.video` and :mod:`lightning_style.flow`); its
            result is ``<clip>__<style>.mp4``.
        style: a style image, a folder of them, or a list of files and folders.
        steps: optimisation steps each pair gets (a batch of pairs is optimised together for that many steps;
            L-BFGS: one ``LBFGS.step()`` each, up to ``max_iter`` evaluations). Its batches carry them to the model.
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
        init: an image every pair starts from (resized to its content) instead of ``StyleTransfer(init=...)``.
        num_workers: processes that decode the next batch while one is optimised (0: decode in the main process).
        shard: this run's part of the job, ``0 .. shards-1``, run with no communication with the other parts;
            default: the index of a SLURM array task (``SLURM_ARRAY_TASK_ID``) or of a Kubernetes Indexed Job's pod
            (``JOB_COMPLETION_INDEX``), else the whole job. See :mod:`lightning_style.shards`.
        shards: the number of parts the job is cut into (a pair's part depends only on its name); default: the
            SLURM array's task count, else 1. 1 runs the whole job, even in an array task.
    """

    def __init__(
        self,
        content: str | list[str],
        style: str | list[str],
        *,
        steps: int = 500,
        pairing: Literal["product", "zip", "blend"] = "product",
        image_size: int = 512,
        style_scale: float = 1.0,
        style_weights: list[float] | None = None,
        masks: str | list[str] | None = None,
        init: str | None = None,
        batch_size: int = 4,
        num_workers: int = 0,
        shard: int | None = None,
        shards: int | None = None,
    ) -> None:
        super().__init__()
        for option, value in (("steps", steps), ("image_size", image_size), ("batch_size", batch_size)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise OptionError(DATA, option, value, "must be a whole number >= 1")
        if not style_scale > 0:
            raise OptionError(DATA, "style_scale", style_scale, "must be positive")
        contents, styles = image_files(content, "content", also=VIDEO_SUFFIXES), image_files(style, "style")
        weights = [1.0] * len(styles) if style_weights is None else list(style_weights)
        if style_weights is not None and pairing != "blend":
            raise OptionError(DATA, "style_weights", style_weights, "needs pairing='blend'")
        if len(weights) != len(styles) or not all(w >= 0 for w in weights) or not sum(weights) > 0:
            raise OptionError(DATA, "style_weights", style_weights, f"must be {len(styles)} weights >= 0 (one per "
                                                                    "style image) with a positive sum")
        self.sources = pair_up(contents, styles, pairing)
        self.style_weights = tuple(w / sum(weights) for w in weights) if pairing == "blend" else (1.0,)
        self.names = [pair_name(c, ss) for c, ss in self.sources]
        if len(set(self.names)) < len(self.names):
            seen = set()
            twice = next(name for name in self.names if name in seen or seen.add(name))
            raise StyleTransferError(f"two pairs are both named {twice!r}: rename one of the images")
        self.shard = find_shard(shard, shards)
        self.job_names = self.names  # every shard's pairs; this run plans and reads only its own
        if self.shard.count > 1:
            self.sources = [pair for pair, name in zip(self.sources, self.names, strict=True) if self.shard.holds(name)]
            self.names = [name for name in self.names if self.shard.holds(name)]
        self.image_size, self.style_scale = image_size, style_scale
        self.batch_size, self.steps, self.num_workers = batch_size, steps, num_workers
        self.masks = mask_files(masks, pairing, styles, style_weights)
        self.init = None if init is None else Path(init).expanduser()
        self.sizes: dict[Path, tuple[int, int]] = {}
        self.fingerprints: dict[Path, str] = {}  # what identifies each file's picture (see record.fingerprint)
        self.clip_info: dict[Path, ClipInfo] = {}
        for path, role in self._files():
            if is_clip(path) and role != "content":
                raise StyleTransferError(f"{role} {path}: a clip can only be a content (use one of its frames as "
                                         f"an image)")
            if is_clip(path):
                if self.masks:
                    raise OptionError(DATA, "masks", [str(m) for m in self.masks], f"cannot go with clips (content "
                                                                                    f"{path})")
                info = self.clip_info[path] = probe_clip(path, role)
                self.sizes[path] = (info.width, info.height)
            else:
                with open_image(path, role) as image:
                    self.sizes[path] = displayed_size(image)
            try:
                self.fingerprints[path] = fingerprint(path)
            except OSError as error:
                raise StyleTransferError(f"{role} {path}: cannot read it ({error.strerror or error})") from None
        check_frame_sizes(self.clip_info, image_size, DATA)
        for mask in self.masks:
            for content in dict.fromkeys(content for content, _ in self.sources):
                (mw, mh), (cw, ch) = self.sizes[mask], self.sizes[content]
                if abs(mw / mh - cw / ch) > 0.02 * cw / ch:
                    raise StyleTransferError(f"mask {mask}: {mw}x{mh} px, but content {content} is {cw}x{ch} px: a "
                                             "mask needs the content's aspect ratio (it is resized to the content)")
        # each clip pair becomes its frames' pairs; clips: clip pair -> (its clip, its frames' names)
        self.names, self.sources, frames, self.clips = expand(self.names, self.sources, self.clip_info)
        self.files = PairFiles(tuple(self.names), tuple(self.sources), self.style_weights, tuple(self.masks),
                               image_size, self.style_size, tuple(self.shapes()[0]), self.init, frames,
                               {path: info.rotation for path, info in self.clip_info.items()})
        self.done: frozenset[str] = frozenset()  # pairs whose results are in the output folder: not planned
        self.settings: dict = {}  # the model's options that change a result (see leave_out)
        self.plan: Plan | None = None  # this run's plan, over the pairs not done
        self._resumed: dict | None = None

    def _files(self) -> list[tuple[Path, str]]:
        return list(dict.fromkeys(
            [(c, "content") for c, _ in self.sources] + [(s, "style") for _, ss in self.sources for s in ss]
            + [(m, "mask") for m in self.masks] + ([(self.init, "init")] if self.init else [])
        ))

    @property
    def style_size(self) -> int:
        """The style images' longer side in pixels."""
        return max(1, round(self.image_size * self.style_scale))

    def check_min_size(self, min_size: int) -> None:
        """Raise if any image, once resized, has a side shorter than ``min_size`` pixels."""
        for path, role in self._files():
            if role in ("mask", "init"):
                continue
            height, width = resized_shape(*self.sizes[path], self.image_size if role == "content" else self.style_size)
            if min(height, width) < min_size:
                option = "image_size" if role == "content" else "style_scale"
                value = self.image_size if role == "content" else self.style_scale
                raise OptionError(DATA, option, value, f"makes {role} {path} {width}x{height} px, but the model's "
                                  f"layers (and pyramid levels) need at least {min_size} px on each side (raise "
                                  f"{option}, or use a less elongated image)")

    def shapes(self) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """``(height, width)`` of each pair's content (in pair order) and of each style image once resized, read
        from the headers, without decoding."""
        contents = [frame_shape(self.clip_info[content], self.image_size) if content in self.clip_info
                    else resized_shape(*self.sizes[content], self.image_size) for content, _ in self.sources]
        styles = [resized_shape(*self.sizes[path], self.style_size) for path, role in self._files() if role == "style"]
        return contents, styles

    # --- the plan and the loader --------------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        """Decode the masks (shared by every pair) to refuse a black one before any compute."""
        images = {(path, "mask"): load_image(path, role="mask") for path in self.masks}
        if images:
            self.files.masks_for(images, (8, 8))

    def inputs(self, index: int) -> dict:
        """What pair ``index``'s result is made of: its files' fingerprints and the data options that change it."""
        content, styles = self.sources[index]
        return {"content": self.fingerprints[content], "styles": [self.fingerprints[s] for s in styles],
                "masks": [self.fingerprints[m] for m in self.masks], "style_weights": list(self.style_weights),
                "image_size": self.image_size, "style_scale": self.style_scale, "steps": self.steps,
                **({"init": self.fingerprints[self.init]} if self.init else {}),
                **({"frame": self.files.frame(index)} if self.files.frame(index) >= 0 else {})}

    def kept(self, done: Collection[str]) -> frozenset[str]:
        """The pairs of ``done`` that stay done: all but a clip's frames after its first frame not done (each frame
        starts from the one before, so those are redone too)."""
        return kept_frames(done, self.clips)

    def leave_out(self, done: Collection[str], settings: Mapping = {}, results: str | Path | None = None) -> None:
        """Plan only the pairs not in ``done`` (their results are already in the output folder ``results``), and
        tie the batches in progress that a checkpoint holds to ``settings`` (the model's options that change a
        result): when a pair's inputs or these settings differ from the checkpoint's, its batch starts again.
        A clip's frames after its first frame not done are redone too (each frame starts from the one before).
        :class:`~lightning_style.callbacks.ImageWriter` calls it when a run is set up."""
        self.done, self.settings = self.kept(done), dict(settings)
        self.files = dataclasses.replace(self.files, results=None if results is None else Path(results))

    def state_dict(self) -> dict:
        """The batches in progress (each process's pairs, by name), how far they are, and what they are made of.
        Nothing about finished pairs: the output folder is their record."""
        if self.plan is None:
            return {}
        rounds, within = self.plan.at(self.trainer.global_step)
        in_progress = within > 0 and rounds < len(self.plan.batches[0])
        batches = [[self.names[i] for i in rank[rounds]] for rank in self.plan.batches] if in_progress else []
        index = {name: i for i, name in enumerate(self.names)} if batches else {}
        return {"world": self.plan.world, "steps": self.plan.steps, "within": within if in_progress else 0,
                "batches": batches, "settings": self.settings,
                "inputs": {name: self.inputs(index[name]) for names in batches for name in names}}

    def load_state_dict(self, state_dict: dict) -> None:
        self._resumed = state_dict or None

    def train_dataloader(self) -> Iterable[PairBatch]:
        """One item per step for this process, from the current step to the end of its last batch: the batches in
        progress of a resumed checkpoint first (when they are still to do), then the pairs not done."""
        trainer = self.trainer
        world, step = trainer.world_size, trainer.global_step
        if self.clips and self.files.results is None:
            rank_zero_warn("clips without an ImageWriter: each frame is stylised on its own (a frame starts from the "
                           "previous frame's result, read from the output folder)")
        pending = [i for i, name in enumerate(self.names) if name not in self.done]
        first, within = self._in_progress(world, set(pending))
        self.plan = Plan(self.deal(pending, world, first), self.steps, step - within)
        items = PlanItems(self.files, self.plan, trainer.global_rank)
        return PlanLoader(items, trainer, self.num_workers)

    def deal(self, pending: list[int], world: int, first: tuple[Batch, ...] = ()) -> tuple[tuple[Batch, ...], ...]:
        """Each process's batches of the ``pending`` pairs: ``first`` (a checkpoint's batches in progress, one per
        process) first, then batches of images of one shape (:meth:`Plan.deal`), then clips, whole, each frame a
        batch of its own after the one before (:func:`~lightning_style.plan.add_chains`)."""
        taken = {i for batch in first for i in batch}
        stills = [i for i in pending if i not in taken and self.files.frame(i) < 0]
        later = Plan.deal([self.files.shapes[i] for i in stills], self.batch_size, world, self.steps).batches
        batches = [first[rank:rank + 1] + tuple(tuple(stills[i] for i in batch) for batch in later[rank])
                   for rank in range(world)]
        chains = frame_chains([i for i in pending if i not in taken], self.sources, self.files.frame)
        pinned = {self.sources[i]: rank for rank, batch in enumerate(first) for i in batch}
        return add_chains(batches, list(chains.values()), [pinned.get(clip) for clip in chains], keep=len(first) > 0)

    def _in_progress(self, world: int, pending: set[int]) -> tuple[tuple[tuple[int, ...], ...], int]:
        """The checkpoint's batches in progress that go on (``()`` for a process whose batch starts again), and
        the steps they have had; nothing when there are none."""
        state, self._resumed = self._resumed, None
        if not state:
            return (), 0
        where = f"--ckpt_path {self.trainer.ckpt_path}"
        batches, within = check_plan_state(state, where)
        if not batches:
            return (), 0
        if state["world"] != world or state["steps"] != self.steps:
            rank_zero_warn(f"{where}: the number of processes or the steps changed since the checkpoint: its "
                           f"batches in progress start again")
            return (), 0
        index = {name: i for i, name in enumerate(self.names)}
        first, dropped = [], []
        for names in batches:
            indices = tuple(index.get(name, -1) for name in names)
            if -1 in indices:
                dropped.append(f"{names[indices.index(-1)]} is not a pair of this run")
            elif not pending.issuperset(indices):
                pass  # finished since (another run wrote it): nothing to go on with
            elif changed := [i for i in indices if plain(state["inputs"].get(self.names[i])) != plain(self.inputs(i))
                             or plain(state["settings"]) != plain(self.settings)]:
                i = changed[0]
                why = difference({"inputs": state["inputs"].get(self.names[i]), "settings": state["settings"]},
                                 {"inputs": self.inputs(i), "settings": self.settings})
                dropped.append(f"{self.names[i]}: {why}")
            elif (previous := next((i - 1 for i in indices if self.files.frame(i) > 0 and i - 1 in pending),
                                   None)) is not None:
                dropped.append(f"{self.names[previous]}, the frame before {self.names[previous + 1]}, is to be redone")
            elif len({self.files.shapes[i] for i in indices}) > 1:
                dropped.append(f"the pairs of {names[0]}'s batch no longer have one image shape")
            else:
                first.append(indices)
                continue
            first.append(())
        if dropped:
            rank_zero_warn(f"{where}: {len(dropped)} batch(es) in progress start again ({'; '.join(dropped)})")
        return (tuple(first), within) if any(first) else ((), 0)

    def decode(self, pairs: list[int]) -> PairBatch:
        """The pixels of the pairs with these indices (in ``names``), as their batch's first step gets them."""
        return self.files.decode(pairs, 0, self.steps)

    def progress(self, step: int) -> tuple[int, int]:
        """``(pairs done, pairs in all)`` at global ``step``: those in the output folder when the run started and
        those this run's plan has finished by then, over every process."""
        return len(self.done) + (self.plan.count_done(step) if self.plan else 0), len(self.names)
