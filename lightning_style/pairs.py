"""Pairs of image files: their names, how contents meet styles, and the pixels of a batch of them (``PairBatch``)."""

import hashlib
import itertools
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from .errors import OptionError, StyleTransferError
from .flow import FrameLink, flow_between
from .images import load_image
from .video import Clips

MAX_NAME_BYTES = 200  # a pair's name, so that "<name>.png" fits the usual 255-byte limit on file names


def pair_name(content: Path, styles: Sequence[Path]) -> str:
    """``<content-stem>__<style-stem>`` (``+``-joined for several styles); a name longer than 200 bytes (a blend
    of many styles) becomes ``<content-stem>__<N>-styles-<hash>``, short and the same on every run."""
    name = f"{content.stem}__{'+'.join(style.stem for style in styles)}"
    if len(name.encode()) <= MAX_NAME_BYTES:
        return name
    digest = hashlib.sha1(name.encode()).hexdigest()[:10]
    def short(stem: str, limit: int) -> str:
        return stem.encode()[:limit].decode(errors="ignore")  # whole UTF-8 characters only

    styles_part = f"{len(styles)}-styles" if len(styles) > 1 else short(styles[0].stem, 60)
    return f"{short(content.stem, 120)}__{styles_part}-{digest}"


def pair_up(contents: list[Path], styles: list[Path], pairing: str) -> list[tuple[Path, tuple[Path, ...]]]:
    """``(content, styles)`` of every pair: ``product``, ``zip`` (a single image on one side goes with every
    image on the other) or ``blend`` (each content with all the styles)."""
    if pairing == "product":
        return [(c, (s,)) for c, s in itertools.product(contents, styles)]
    if pairing == "zip":
        if len(contents) != len(styles) and 1 not in (len(contents), len(styles)):
            raise OptionError("PairDataModule", "pairing", pairing, "needs as many content as style images (or one of "
                              f"either), got {len(contents)} and {len(styles)}")
        if len(contents) == 1:  # one photo in every style, or every photo in one style
            contents = contents * len(styles)
        elif len(styles) == 1:
            styles = styles * len(contents)
        return [(c, (s,)) for c, s in zip(contents, styles, strict=True)]
    if pairing == "blend":
        return [(c, tuple(styles)) for c in contents]
    raise OptionError("PairDataModule", "pairing", pairing, "must be product, zip or blend")


def mask_files(masks, pairing: str, styles: list[Path], style_weights) -> list[Path]:
    """The mask files of a blend (``PairDataModule(masks=...)``): one per style, with ``pairing='blend'`` and
    no ``style_weights``."""
    if masks is None:
        return []
    masks = [Path(mask).expanduser() for mask in ([masks] if isinstance(masks, (str, Path)) else masks)]
    given = [str(mask) for mask in masks]
    if pairing != "blend":
        raise OptionError("PairDataModule", "masks", given, "needs pairing='blend' (each content with all the "
                                                            "styles, each in its mask)")
    if style_weights is not None:
        raise OptionError("PairDataModule", "masks", given, "and style_weights do not go together: a mask's grey "
                                                            "level sets its style's strength")
    if len(masks) != len(styles):
        raise OptionError("PairDataModule", "masks", given, f"must be one mask per style image: got {len(masks)} "
                                                            f"masks and {len(styles)} styles")
    return masks


@dataclass
class PairBatch:
    """What the module gets at one step: the step within the batch and, at the batch's first step (or the first
    after a resume), the pixels of its pairs; between those, the pixels stay ``None`` and nothing is decoded.

    ``contents`` is ``(B, 3, H, W)`` in ``[0, 1]``; ``styles[i]`` the style images of pair ``i`` (several for a
    blend or masks), ``style_weights[i]`` their weights; ``masks`` ``(B, R, H, W)`` or ``None``; ``init`` the
    data's starting image resized to each content, ``(B, 3, H, W)``, or ``None``; ``links`` for each pair that is a
    clip's frame after its first, how it follows the previous frame (else ``None``); ``skipped`` the pairs of the
    batch whose files could not be decoded (left out of ``names``). An empty ``names`` means this process idles
    for the batch's steps.
    """

    names: tuple[str, ...]
    step: int
    steps: int
    contents: Tensor | None = None
    styles: list[tuple[Tensor, ...]] = field(default_factory=list)
    style_weights: list[tuple[float, ...]] = field(default_factory=list)
    masks: Tensor | None = None
    init: Tensor | None = None
    links: tuple[FrameLink | None, ...] = ()
    skipped: tuple[str, ...] = ()


@dataclass(frozen=True)
class PairFiles:
    """Every pair's files and how to decode a batch of them (small and picklable, for loader workers).

    A clip's frames are pairs too: ``frames[i]`` is pair ``i``'s frame number in its content clip (-1 for an image),
    and a clip's frames follow each other in ``names``. With ``results``, the folder of the results, each frame
    after a clip's first is linked to the previous frame's result (see :class:`~lightning_style.flow.FrameLink`).
    """

    names: tuple[str, ...]
    sources: tuple[tuple[Path, tuple[Path, ...]], ...]
    style_weights: tuple[float, ...]
    masks: tuple[Path, ...]
    image_size: int
    style_size: int
    shapes: tuple[tuple[int, int], ...]  # each pair's content (height, width) once resized, from its header at start-up
    init: Path | None = None  # a starting image for every pair, resized to each content
    frames: tuple[int, ...] = ()  # each pair's frame number in its clip, -1 for an image; empty: no clips
    rotations: Mapping[Path, int] = field(default_factory=dict)  # each clip's rotation flag
    results: Path | None = None  # where results go: a frame's link names its previous frame's result there
    clips: Clips = field(default_factory=Clips, compare=False, repr=False)

    def frame(self, index: int) -> int:
        """Pair ``index``'s frame number in its clip, -1 for an image."""
        return self.frames[index] if self.frames else -1

    def _content(self, index: int, images: dict) -> tuple:
        """Decode pair ``index``'s content (an image or a clip's frame) into ``images``; returns its key there."""
        content, frame = self.sources[index][0], self.frame(index)
        key = (content, "content", frame)
        if key not in images:
            if frame < 0:
                images[key] = load_image(content, self.image_size, "content")
            else:
                images[key] = self.clips.frame(content, frame, self.shapes[index], self.rotations[content])
        return key

    def _link(self, index: int) -> FrameLink | None:
        """How frame ``index`` follows the frame before it in its clip (``None`` for a first frame or an image)."""
        frame = self.frame(index)
        if frame < 1 or self.results is None:
            return None
        content = self.sources[index][0]
        shape, rotation = self.shapes[index], self.rotations[content]
        previous = self.clips.frame(content, frame - 1, shape, rotation)
        flow, reliable = flow_between(previous, self.clips.frame(content, frame, shape, rotation))
        return FrameLink(self.results / f"{self.names[index - 1]}.png", flow, reliable)

    def decode(self, pairs: list[int], step: int, steps: int) -> PairBatch:
        """Decode the pairs of one batch (each file once); a pair whose file fails to decode now is left out with
        one warning line (its headers were fine at start-up)."""
        images, names, skipped, rows = {}, [], [], []
        for index in pairs:
            content, styles = self.sources[index]
            try:
                key = self._content(index, images)
                for path, role in [*((s, "style") for s in styles), *((m, "mask") for m in self.masks)]:
                    if (path, role) not in images:
                        images[path, role] = load_image(path, self.style_size if role == "style" else None, role)
                if (shape := tuple(images[key].shape[1:])) != self.shapes[index]:
                    (h, w), (h0, w0) = shape, self.shapes[index]
                    raise StyleTransferError(f"content {content}: {w}x{h} px once resized, but {w0}x{h0} px when the "
                                             "run started (the file was replaced)")
                masks = self.masks_for(images, shape)
                if self.init is not None and (self.init, "init") not in images:
                    images[self.init, "init"] = load_image(self.init, role="init")
                init = None if self.init is None else F.interpolate(
                    images[self.init, "init"][None], size=shape, mode="bilinear", antialias=True)[0].clamp(0, 1)
                link = self._link(index)
            except StyleTransferError as error:
                warnings.warn(f"skipping pair {self.names[index]}: {error}", stacklevel=1)  # on every process
                skipped.append(self.names[index])
                continue
            names.append(self.names[index])
            rows.append((images[key], tuple(images[s, "style"] for s in styles), masks, init, link))
        if not rows:
            return PairBatch((), step, steps, torch.zeros(0, 3, 1, 1), skipped=tuple(skipped))
        contents, styles, masks, inits, links = zip(*rows, strict=True)
        return PairBatch(tuple(names), step, steps, torch.stack(contents), list(styles),
                         [self.style_weights] * len(rows), _stacked(masks), _stacked(inits),
                         links if any(links) else (), tuple(skipped))

    def masks_for(self, images: dict, size: tuple[int, int]) -> Tensor | None:
        """``(R, H, W)`` masks at a content's size: grey levels (the mean of R, G, B) in ``[0, 1]``."""
        if not self.masks:
            return None
        masks = []
        for path in self.masks:
            mask = images[path, "mask"].mean(0, keepdim=True)
            if mask.max() < 0.5 / 255:
                raise StyleTransferError(f"mask {path}: black everywhere, so its style would be painted nowhere")
            masks.append(F.interpolate(mask[None], size=size, mode="bilinear", antialias=True)[0, 0].clamp(0, 1))
        return torch.stack(masks)


def _stacked(tensors: tuple[Tensor | None, ...]) -> Tensor | None:
    return None if tensors[0] is None else torch.stack(tensors)
