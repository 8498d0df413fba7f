"""The output folder is the job's record: a pair is done when ``<dir>/<name>.png`` exists and its provenance says
that it is the result of this pair's inputs with these settings.

The provenance is a JSON text chunk in the PNG (``lightning-style``): the pair, the fingerprints of its input
files, the options that change a result, and the steps taken. Reading it opens the PNG's header only (about
0.1 ms a file); nothing about finished pairs is kept anywhere else, so a job goes on from whatever the folder holds.
Half-optimised images only ever go to ``<dir>/partial/``.
"""

import contextlib
import hashlib
import json
import os
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError
from PIL.PngImagePlugin import PngInfo

from .files import replace_atomically

KEY = "lightning-style"  # the PNG text chunk
SAMPLE = 64 * 1024  # bytes read at each end of a file for its fingerprint
PARTIAL = "partial"
MISSING = object()


def fingerprint(path: str | Path) -> str:
    """``<size>:<digest>`` of a file: its size and a digest of its first and last 64 KiB (all of a file of up to
    128 KiB). Cheap for any number of files; it does not depend on the file's name, folder or modification time,
    so moving or copying inputs keeps their results, while replacing one by another picture changes it.

    Raises:
        OSError: the file cannot be read.
    """
    digest = hashlib.blake2b(digest_size=12)
    with open(path, "rb") as file:
        size = os.fstat(file.fileno()).st_size
        digest.update(file.read(SAMPLE))
        if size > SAMPLE:
            file.seek(max(SAMPLE, size - SAMPLE))
            digest.update(file.read(SAMPLE))
    return f"{size}:{digest.hexdigest()}"


def plain(value: Any) -> Any:
    """``value`` as JSON gives it back (tuples become lists), so that a provenance compares equal after a round trip."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def difference(old: Mapping, new: Mapping) -> str:
    """The first thing that differs between two provenances, in words: ``style_weight 100.0 -> 50.0``."""
    for part in ("pair", "inputs", "settings"):
        a, b = old.get(part), new.get(part)
        if a == b:
            continue
        if not (isinstance(a, Mapping) and isinstance(b, Mapping)):
            return f"{part} {a} -> {b}"
        key = _first_difference(a, b)
        if part == "inputs" and key in ("content", "styles", "masks"):
            return f"its {key.rstrip('s')} file changed"
        a, b = a.get(key), b.get(key)
        if isinstance(a, Mapping) and isinstance(b, Mapping):  # the optimiser: its class, else an argument
            inner = _first_difference(a, b)
            key, a, b = f"{key}.{inner}", a.get(inner, "(default)"), b.get(inner, "(default)")
        return f"{key} {json.dumps(a)} -> {json.dumps(b)}"
    return "nothing"


def _first_difference(a: Mapping, b: Mapping) -> str:
    keys = sorted(set(a) | set(b), key=lambda key: (key != "class", key))
    return next(key for key in keys if a.get(key, MISSING) != b.get(key, MISSING))


class Record:
    """The results in a folder: which pairs are done, and writing a result (or a partial image) with its provenance.

    Args:
        dir: the output folder.
    """

    def __init__(self, dir: str | Path) -> None:
        self.dir = Path(dir)

    def path(self, name: str) -> Path:
        """Where pair ``name``'s result goes."""
        return self.dir / f"{name}.png"

    def clip_path(self, clip: str) -> Path:
        """Where clip pair ``clip``'s result goes: its frames (pairs ``<clip>/frame-00001`` ...) as a video."""
        return self.dir / f"{clip}.mp4"

    def partial_path(self, name: str) -> Path:
        """Where pair ``name``'s half-optimised images go (``--output.every_n_steps``, a stop)."""
        return self.dir / PARTIAL / f"{name}.png"

    def read(self, name: str) -> dict | None:
        """The provenance of pair ``name``'s result on disk; ``None`` when there is none or it carries none."""
        try:
            with Image.open(self.path(name)) as image:
                text = image.info.get(KEY)
        except (OSError, UnidentifiedImageError, ValueError, SyntaxError):
            return None
        try:
            provenance = json.loads(text) if isinstance(text, str) else None
        except ValueError:
            return None
        return provenance if isinstance(provenance, dict) else None

    def survey(self, expected: Mapping[str, Mapping]) -> tuple[set[str], dict[str, str]]:
        """Compare the folder with the ``expected`` provenance of each pair (without ``steps``).

        Returns:
            The pairs that are done, and for each result on disk that is not, why it will be redone.
        """
        done, redo = set(), {}
        for name, want in expected.items():
            if not self.path(name).exists():
                continue
            found = self.read(name)
            if found is None:
                redo[name] = "it carries no lightning-style provenance"
            elif {key: found.get(key) for key in want} == want and found.get("complete"):
                done.add(name)
            else:
                redo[name] = difference(found, want) if found.get("complete") else "it is unfinished"
        return done, redo

    def count_results(self, names: Collection[str]) -> int:
        """How many of the pairs ``names`` have a result file (an image or a clip) in the folder, read from one
        listing of the folder (no file opened, provenance unchecked): what a shard can tell of the whole job
        cheaply."""
        try:
            present = {entry.name for entry in os.scandir(self.dir)}
        except OSError:
            return 0
        return sum(f"{name}.png" in present or f"{name}.mp4" in present for name in names)

    def write(self, name: str, image: Image.Image, provenance: Mapping, *, partial: bool = False) -> Path:
        """Write pair ``name``'s image atomically, as an sRGB PNG carrying ``provenance``. A result (``partial``
        false) removes the pair's partial image."""
        path = self.partial_path(name) if partial else self.path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        info = PngInfo()
        info.add(b"sRGB", b"\x00")  # the pixels are sRGB (inputs with a colour profile are converted when read)
        info.add_itxt(KEY, json.dumps({**provenance, "complete": not partial}, sort_keys=True))
        replace_atomically(path, lambda file: image.save(file, format="PNG", pnginfo=info))
        if not partial:  # its partial image goes, and the folders with the last one (a clip's, then partial/)
            parents = self.partial_path(name).parents
            folders = [folder for folder in parents if folder.is_relative_to(self.dir / PARTIAL)]
            for remove in (self.partial_path(name).unlink, *(folder.rmdir for folder in folders)):
                with contextlib.suppress(OSError):  # not there, other partial images in the folder, or no folder
                    remove()
        return path
