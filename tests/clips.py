"""Small clips the tests make themselves: shapes moving over a gradient, written with PyAV (H.264 in MP4)."""

from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def moving_shapes(frames: int = 16, width: int = 64, height: int = 64) -> list[np.ndarray]:
    """``frames`` RGB frames: a yellow square moving right and down, a blue disc moving left, over a gradient."""
    ys, xs = np.mgrid[0:height, 0:width]
    result = []
    for t in range(frames):
        image = np.stack([xs * 200 // width + 30, ys * 200 // height + 30, np.full_like(xs, 128)], -1).astype(np.uint8)
        image[(abs(xs - 10 - 2 * t) < 8) & (abs(ys - 14 - t) < 8)] = (250, 240, 30)
        image[(xs - width * 5 // 8 + t) ** 2 + (ys - height * 5 // 8) ** 2 < 64] = (20, 60, 220)
        result.append(image)
    return result


def write_clip(path: Path, frames: list[np.ndarray] | None = None, *, rate: int = 12, codec: str = "libx264",
               rotation: int = 0, pts: list[int] | None = None, audio: str | None = None) -> Path:
    """Write ``frames`` (default: :func:`moving_shapes`) as a clip; ``pts`` in units of 1/(rate*100) s gives
    a variable frame rate; ``audio`` (``aac``, ``pcm_s16le``...) adds a second of a 440 Hz tone."""
    frames = moving_shapes() if frames is None else frames
    height, width = frames[0].shape[:2]
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if pts is not None:
            stream.codec_context.time_base = stream.time_base = Fraction(1, rate * 100)
        if rotation:
            stream.set_display_rotation(rotation)
        sound = container.add_stream(audio, rate=44100) if audio else None
        for t, pixels in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            if pts is not None:
                frame.pts, frame.time_base = pts[t], Fraction(1, rate * 100)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
        if sound is not None:
            samples = (np.sin(np.arange(44100) * 2 * np.pi * 440 / 44100) * 0.3).astype(np.float32)[None]
            if audio.startswith("pcm_s16"):
                samples, kind = (samples * 32767).astype(np.int16), "s16"
            else:
                kind = "fltp" if audio == "aac" else "flt"
            for start in range(0, 44100, 1024):
                chunk = av.AudioFrame.from_ndarray(samples[:, start:start + 1024], format=kind, layout="mono")
                chunk.sample_rate, chunk.pts = 44100, start
                container.mux(sound.encode(chunk))
            container.mux(sound.encode(None))
    return path
