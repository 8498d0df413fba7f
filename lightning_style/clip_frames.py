"""A clip pair as a chain of frame pairs: its frames' names, which of them stay done, and the chains that the plan
deals whole to one process (each frame starts from the previous frame's result)."""

from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path

from .errors import OptionError
from .flow import MIN_FLOW_SIDE
from .video import ClipInfo, frame_shape

Clips = dict[str, tuple[Path, tuple[str, ...]]]  # clip pair -> (its clip, its frames' names)


def expand(names: Sequence[str], sources: Sequence[tuple], clip_info: Mapping[Path, ClipInfo]
           ) -> tuple[list[str], list[tuple], tuple[int, ...], Clips]:
    """Each clip pair becomes its frames' pairs (named ``<pair>/frame-00001`` ...), in order: the new names and
    sources, each pair's frame number (-1 for an image; empty when there is no clip), and the clip pairs."""
    if not clip_info:
        return list(names), list(sources), (), {}
    clips: Clips = {}
    new_names, new_sources, frames = [], [], []
    for name, source in zip(names, sources, strict=True):
        count = clip_info[source[0]].frames if source[0] in clip_info else 0
        if count:
            clips[name] = (source[0], tuple(f"{name}/frame-{t + 1:05d}" for t in range(count)))
        new_names += clips[name][1] if count else [name]
        new_sources += [source] * max(count, 1)
        frames += range(count) if count else [-1]
    return new_names, new_sources, tuple(frames), clips


def kept_frames(done: Collection[str], clips: Clips) -> frozenset[str]:
    """The pairs of ``done`` that stay done: all but a clip's frames after its first frame not done."""
    done = set(done)
    for _, frames in clips.values():
        todo = next((t for t, name in enumerate(frames) if name not in done), len(frames))
        done.difference_update(frames[todo:])
    return frozenset(done)


def frame_chains(pairs: Sequence[int], sources: Sequence[tuple], frame: Callable[[int], int]) -> dict[tuple, list[int]]:
    """The frames among ``pairs`` (indices), in order, by clip pair (its sources: clip, styles)."""
    chains: dict[tuple, list[int]] = {}
    for i in pairs:
        if frame(i) >= 0:
            chains.setdefault(sources[i], []).append(i)
    return chains


def check_frame_sizes(clip_info: Mapping[Path, ClipInfo], image_size: int, owner: str) -> None:
    """Refuse an ``image_size`` that makes a clip's frames smaller than the optical flow can follow."""
    for path, info in clip_info.items():
        if min(shape := frame_shape(info, image_size)) < MIN_FLOW_SIDE:
            raise OptionError(owner, "image_size", image_size, f"makes the frames of clip {path} {shape[1]}x"
                              f"{shape[0]} px, but the optical flow needs at least {MIN_FLOW_SIDE} px a side")
