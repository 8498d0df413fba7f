"""Image files in, ``(3, H, W)`` tensors out: checks before decoding, orientation, colour profiles, any mode."""

import io
import stat
import struct
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from lightning_utilities.core.rank_zero import rank_zero_warn
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError
from torch import Tensor

from .errors import OptionError, StyleTransferError

IMAGE_SUFFIXES = frozenset(Image.registered_extensions())
UNSUPPORTED = {".heic": "HEIC", ".heif": "HEIF", ".avif": "AVIF", ".jxl": "JPEG XL", ".raw": "camera raw",
               ".cr2": "camera raw", ".nef": "camera raw", ".dng": "camera raw", ".arw": "camera raw"}
UNSUPPORTED = {suffix: kind for suffix, kind in UNSUPPORTED.items() if suffix not in IMAGE_SUFFIXES}
ORIENTATION = 0x0112  # the EXIF tag
_SRGB = ImageCms.createProfile("sRGB")


def _problem(path: Path) -> str | None:
    """What keeps ``path`` from being read as an image file, or ``None``."""
    try:
        info = path.stat()
    except FileNotFoundError:
        return "a broken link (its target does not exist)" if path.is_symlink() else "no such file"
    except PermissionError:
        return "cannot read it (permission denied)"
    except OSError as error:  # a symlink loop, a name too long...
        return f"cannot open it ({error.strerror or error})"
    if stat.S_ISDIR(info.st_mode):
        return "no such file (it is a folder)"
    if not stat.S_ISREG(info.st_mode):
        return "not a regular file (a pipe, socket or device)"
    if info.st_size == 0:
        return "the file is empty"
    return None


def open_image(path: str | Path, role: str = "image") -> Image.Image:
    """Open an image lazily (header only) and check it: a readable regular file, an image Pillow can decode, not
    a decompression bomb.

    Raises:
        StyleTransferError: naming ``role`` and ``path`` and what is wrong.
    """
    path = Path(path)
    if problem := _problem(path):
        raise StyleTransferError(f"{role} {path}: {problem}")
    try:
        return Image.open(path)  # reads the header only; refuses sizes over 2 * Image.MAX_IMAGE_PIXELS
    except Image.DecompressionBombError as error:
        raise StyleTransferError(f"{role} {path}: too large, refused before decoding ({error})") from None
    except PermissionError:
        raise StyleTransferError(f"{role} {path}: cannot read it (permission denied)") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        if path.suffix.lower() in UNSUPPORTED:
            raise StyleTransferError(f"{role} {path}: Pillow cannot read {UNSUPPORTED[path.suffix.lower()]} images; "
                                     "convert it to JPEG or PNG first") from None
        raise StyleTransferError(f"{role} {path}: not a readable image ({error})".splitlines()[0]) from None


def displayed_size(image: Image.Image) -> tuple[int, int]:
    """``(width, height)`` as a viewer shows the image: swapped when its EXIF orientation turns it by 90 degrees."""
    width, height = image.size
    try:  # a PNG's getexif() would decode the whole image to look for a late eXIf chunk: only read early ones
        orientation = None if image.format == "PNG" and "exif" not in image.info else image.getexif().get(ORIENTATION)
    except (OSError, SyntaxError, ValueError, struct.error):
        orientation = None  # a damaged header: decoding the image says what is wrong
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def _to_srgb(image: Image.Image, path: Path, role: str) -> Image.Image:
    """Convert an image that carries an ICC colour profile to sRGB (a broken profile is ignored with a warning)."""
    profile = image.info.get("icc_profile")
    if not profile or image.mode not in ("RGB", "RGBA", "CMYK", "L"):
        return image
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(profile))
        return ImageCms.profileToProfile(image, source, _SRGB, outputMode="RGBA" if image.mode == "RGBA" else "RGB")
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError) as error:
        rank_zero_warn(f"{role} {path}: ignoring its colour profile, which cannot be used ({error})".splitlines()[0])
        return image


def _to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode -> 8-bit RGB. 16/32-bit greyscale is rescaled; transparency is composited onto white."""
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        values = np.asarray(image, dtype=np.float64)
        scale = 1.0 if image.mode == "F" else 65535.0
        image = Image.fromarray(np.clip(values / scale * 255 + 0.5, 0, 255).astype(np.uint8))
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        image = image.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", image.size, "white"), image).convert("RGB")
    return image.convert("RGB")


def resized_shape(width: int, height: int, long_side: int) -> tuple[int, int]:
    """``(height, width)`` after scaling the longer side to ``long_side`` (aspect ratio kept, at least 1 px)."""
    scale = long_side / max(width, height)
    return max(1, round(height * scale)), max(1, round(width * scale))


def load_image(path: str | Path, long_side: int | None = None, role: str = "image") -> Tensor:
    """Read an image file as a ``(3, H, W)`` float tensor in ``[0, 1]``.

    Honours EXIF orientation, converts colours to sRGB when the file carries an ICC profile (Adobe RGB, Display
    P3, CMYK...), converts any mode to RGB (transparent areas become white) and, if ``long_side`` is
    given, resizes so that the longer side has that many pixels.
    """
    with open_image(path, role) as image:
        try:
            image.load()
            image = _to_rgb(_to_srgb(ImageOps.exif_transpose(image), Path(path), role))
        except (OSError, SyntaxError, ValueError) as error:
            raise StyleTransferError(f"{role} {path}: truncated or corrupt image ({error})".splitlines()[0]) from None
    if long_side is not None:
        height, width = resized_shape(*image.size, long_side)
        image = image.resize((width, height), Image.Resampling.LANCZOS)
    return torch.from_numpy(np.array(image)).permute(2, 0, 1).contiguous().float() / 255


def image_files(sources: str | Sequence[str], role: str, also: frozenset[str] = frozenset()) -> list[Path]:
    """Expand files and folders (sorted; entries that are not image files, nor have a suffix in ``also``, skipped
    with one warning) into a list of paths."""
    files = []
    for source in [sources] if isinstance(sources, (str, Path)) else sources:
        path = Path(source).expanduser()
        if not path.is_dir():
            files.append(path)
            continue
        try:
            entries = sorted(entry for entry in path.iterdir() if not entry.name.startswith("."))
        except OSError as error:
            raise StyleTransferError(f"{role} folder {path}: cannot list it ({error.strerror or error})") from None
        images, skipped = [], []
        for entry in entries:
            problem = "a folder" if entry.is_dir() else _problem(entry)
            if entry.suffix.lower() in UNSUPPORTED:
                problem = f"{UNSUPPORTED[entry.suffix.lower()]}, which Pillow cannot read"
            elif not problem and entry.suffix.lower() not in IMAGE_SUFFIXES | also:
                problem = "not an image file"
            (skipped.append(f"{entry.name} ({problem})") if problem else images.append(entry))
        if skipped:
            entries = "entry" if len(skipped) == 1 else "entries"
            rank_zero_warn(f"{role} folder {path}: skipping {len(skipped)} {entries}: {', '.join(skipped)}")
        if not images:
            raise StyleTransferError(f"{role} folder {path}: no image files in it")
        files += images
    if not files:
        raise OptionError("PairDataModule", role, sources, "names no images")
    return files
