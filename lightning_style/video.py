"""Clips: what a clip holds (``probe_clip``), its frames decoded as they are needed (``Clips``), and the stylised
frames encoded back into a clip (``write_clip``). How a frame follows the one before is :mod:`lightning_style.flow`.

Decoding and encoding go through PyAV, whose wheels bundle FFmpeg (H.264 included). Frames keep their source
timestamps, so a clip's frame rate, constant or variable, is the result's.
"""

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch
from PIL import Image
from torch import Tensor

from .errors import StyleTransferError
from .files import replace_atomically
from .images import _problem, resized_shape

VIDEO_SUFFIXES = frozenset({".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi"})
MP4_AUDIO = frozenset({"aac", "mp3", "ac3", "eac3", "alac", "opus", "flac"})  # copied as they are; others: AAC


def is_clip(path: str | Path) -> bool:
    """Whether ``path`` names a video file (by its suffix)."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


@dataclass(frozen=True)
class ClipInfo:
    """A clip as probed: its displayed ``width`` x ``height`` (after its rotation flag, in degrees counterclockwise),
    its number of ``frames`` and average ``rate`` (frames per second), and whether it has an audio track."""

    width: int
    height: int
    frames: int
    rate: Fraction
    rotation: int
    audio: bool


def _open(path: Path, role: str) -> av.container.InputContainer:
    if problem := _problem(path):
        raise StyleTransferError(f"{role} {path}: {problem}")
    try:
        container = av.open(str(path))
    except av.FFmpegError as error:
        raise StyleTransferError(f"{role} {path}: not a readable video ({error.strerror or error})") from None
    if not container.streams.video:
        container.close()
        raise StyleTransferError(f"{role} {path}: holds no video stream")
    return container


def probe_clip(path: str | Path, role: str = "content") -> ClipInfo:
    """Check a clip before any compute: it opens, its codec decodes here (its first frame is decoded), it holds
    frames and its rotation is a quarter turn. Reads every packet header to count the frames (no decoding).

    Raises:
        StyleTransferError: naming ``role`` and ``path`` and what is wrong.
    """
    path = Path(path)
    with _open(path, role) as container:
        stream = container.streams.video[0]
        codec = stream.codec_context.name
        try:
            first = next(container.decode(stream), None)
        except av.FFmpegError as error:
            raise StyleTransferError(f"{role} {path}: its {codec} video cannot be decoded "
                                     f"({error.strerror or error})") from None
        if first is None:
            raise StyleTransferError(f"{role} {path}: holds no frames")
        rotation = first.rotation % 360
        if rotation % 90:
            raise StyleTransferError(f"{role} {path}: rotated by {rotation} degrees; only quarter turns are supported")
        try:
            container.seek(0)
            frames = sum(1 for packet in container.demux(stream) if packet.size)
        except av.FFmpegError as error:
            raise StyleTransferError(f"{role} {path}: damaged ({error.strerror or error})") from None
        rate = stream.average_rate or stream.guessed_rate or Fraction(25)
        width, height = first.width, first.height
        audio = bool(container.streams.audio)
    if rotation in (90, 270):
        width, height = height, width
    return ClipInfo(width, height, frames, Fraction(rate), rotation, audio)


def frame_shape(info: ClipInfo, long_side: int) -> tuple[int, int]:
    """``(height, width)`` of a clip's frames once resized: even sides, as H.264 (4:2:0) needs."""
    height, width = resized_shape(info.width, info.height, long_side)
    return max(2, height - height % 2), max(2, width - width % 2)


def _to_tensor(frame: av.VideoFrame, rotation: int, shape: tuple[int, int]) -> Tensor:
    pixels = np.rot90(frame.to_ndarray(format="rgb24"), k=rotation // 90)
    image = Image.fromarray(np.ascontiguousarray(pixels)).resize(shape[::-1], Image.Resampling.LANCZOS)
    return torch.from_numpy(np.array(image)).permute(2, 0, 1).contiguous().float() / 255


class Clips:
    """Frames of clips, decoded in order as they are asked for: one reader stays open (the clip being stylised;
    asking for another clip closes it) and keeps its last two frames (a frame and the one before it, for the
    flow), so memory grows neither with a clip's length nor with the number of clips. Asking for an earlier frame
    decodes the clip again from its start. Picklable (the reader is not carried)."""

    def __init__(self) -> None:
        self._readers: dict[tuple[Path, tuple[int, int]], _Reader] = {}

    def __getstate__(self) -> dict:
        return {}

    def __setstate__(self, state: dict) -> None:
        self._readers = {}

    def frame(self, path: Path, index: int, shape: tuple[int, int], rotation: int, role: str = "content") -> Tensor:
        """Frame ``index`` (from 0) of clip ``path`` as a ``(3, H, W)`` tensor in ``[0, 1]`` of ``shape``."""
        key = (path, shape)
        reader = self._readers.get(key)
        if reader is None or index < reader.next - 2:
            self.close()
            reader = self._readers[key] = _Reader(path, shape, rotation, role)
        try:
            return reader.frame(index)
        except StyleTransferError:
            self.close()  # a decoder that failed is not asked again: the next request reopens the clip
            raise

    def close(self) -> None:
        for reader in self._readers.values():
            reader.close()
        self._readers.clear()


class _Reader:
    def __init__(self, path: Path, shape: tuple[int, int], rotation: int, role: str) -> None:
        self.path, self.shape, self.rotation, self.role = path, shape, rotation, role
        self.container = _open(path, role)
        self.frames = self.container.decode(self.container.streams.video[0])
        self.next, self.kept = 0, {}

    def frame(self, index: int) -> Tensor:
        while self.next <= index:
            try:
                frame = next(self.frames, None)
            except av.FFmpegError as error:
                raise StyleTransferError(f"{self.role} {self.path}: frame {self.next} cannot be decoded "
                                         f"({error.strerror or error})") from None
            if frame is None:
                raise StyleTransferError(f"{self.role} {self.path}: ends at frame {self.next}, before frame {index} "
                                         "(the file changed since the run started)")
            self.kept = {k: v for k, v in self.kept.items() if k >= self.next - 1}
            self.kept[self.next] = _to_tensor(frame, self.rotation, self.shape)
            self.next += 1
        return self.kept[index]

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.container.close()


def timestamps(path: str | Path) -> tuple[list[int], Fraction]:
    """The presentation timestamps of a clip's frames, in order, and their time base (packet headers only)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stamps = sorted(packet.pts for packet in container.demux(stream) if packet.size and packet.pts is not None)
        return stamps, Fraction(stream.time_base)


def write_clip(path: str | Path, frames: Iterable[Image.Image], source: str | Path, *, crf: int = 18) -> None:
    """Encode ``frames`` (RGB images, even sides) as an H.264 MP4 at ``path``, atomically, with ``source``'s
    timestamps (its frame rate, constant or variable) and its first audio track copied unchanged. Frames are
    encoded as they come: memory does not grow with the clip."""

    def encode(file) -> None:
        stamps, time_base = timestamps(source)
        with av.open(str(source)) as src, av.open(file, "w", format="mp4") as out:
            rate = src.streams.video[0].average_rate or Fraction(25)
            video = out.add_stream("libx264", rate=rate, options={"crf": str(crf)})
            video.pix_fmt = "yuv420p"
            video.codec_context.time_base = video.time_base = time_base  # the source's clock: its timestamps kept
            sound = src.streams.audio[0] if src.streams.audio else None
            if sound is not None and sound.codec_context.name in MP4_AUDIO:
                audio = out.add_stream_from_template(sound)
            elif sound is not None:  # PCM (a .mov's, an .avi's), Vorbis (a .webm's)...: MP4 cannot hold it as it is
                audio = out.add_stream("aac", rate=sound.codec_context.sample_rate or 44100)
            for count, image in enumerate(frames):
                if count == 0:
                    video.width, video.height = image.size
                frame = av.VideoFrame.from_ndarray(np.asarray(image.convert("RGB")), format="rgb24")
                if count >= len(stamps):  # more frames than the source's timestamps: one tick after the last
                    stamps.append(stamps[-1] + 1 if stamps else 0)
                frame.pts = stamps[count]
                frame.time_base = time_base
                out.mux(video.encode(frame))
            out.mux(video.encode(None))
            if sound is not None:
                _copy_audio(src, sound, out, audio)

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    try:
        replace_atomically(path, encode)
    except (av.FFmpegError, OSError) as error:
        raise StyleTransferError(f"could not encode {path} ({getattr(error, 'strerror', None) or error})") from None


def _copy_audio(src, sound, out, audio) -> None:
    """Copy ``sound``'s packets into ``audio`` (a stream made from it as a template), or decode and encode them as
    AAC when ``audio`` is an AAC stream of ours."""
    if audio.codec_context.name == sound.codec_context.name:
        for packet in src.demux(sound):
            if packet.dts is not None:
                packet.stream = audio
                out.mux(packet)
        return
    resampler = av.AudioResampler(format="fltp", layout=sound.codec_context.layout, rate=audio.codec_context.rate)
    for frame in src.decode(sound):
        for chunk in resampler.resample(frame):
            out.mux(audio.encode(chunk))
    for chunk in resampler.resample(None):
        out.mux(audio.encode(chunk))
    out.mux(audio.encode(None))


def read_frames(path: str | Path) -> list[Tensor]:
    """Every frame of a clip as ``(3, H, W)`` tensors (for tests and benchmarks: the whole clip in memory)."""
    with av.open(str(path)) as container:
        return [torch.from_numpy(frame.to_ndarray(format="rgb24")).permute(2, 0, 1).float() / 255
                for frame in container.decode(video=0)]

