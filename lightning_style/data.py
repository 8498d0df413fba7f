"""Images in, content/style pairs out: loading, validation and the ``PairDataModule``."""

import hashlib
import io
import itertools
import stat
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from lightning_utilities.core.rank_zero import rank_zero_warn
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError
from pytorch_lightning import LightningDataModule
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from .errors import StyleTransferError

IMAGE_SUFFIXES = frozenset(Image.registered_extensions())
UNSUPPORTED = {".heic": "HEIC", ".heif": "HEIF", ".avif": "AVIF", ".jxl": "JPEG XL", ".raw": "camera raw",
               ".cr2": "camera raw", ".nef": "camera raw", ".dng": "camera raw", ".arw": "camera raw"}
UNSUPPORTED = {suffix: kind for suffix, kind in UNSUPPORTED.items() if suffix not in IMAGE_SUFFIXES}
ORIENTATION = 0x0112  # the EXIF tag
MAX_NAME_BYTES = 200  # a pair's name, so that "<name>.png" fits the usual 255-byte limit on file names
_SRGB = ImageCms.createProfile("sRGB")


@dataclass(frozen=True)
class Pair:
    """One content image and its style: one image, a blend of several with weights summing to 1, or several
    each painted in its region.

    ``name`` is ``<content-stem>__<style-stem>`` (``__<style-stem>+<style-stem>`` for several); images are
    ``(3, H, W)`` in ``[0, 1]``; ``masks``, if given, is ``(len(styles), H, W)`` in ``[0, 1]`` (then the
    weights are unused).
    """

    name: str
    content: Tensor
    styles: tuple[Tensor, ...]
    style_weights: tuple[float, ...] = (1.0,)
    masks: Tensor | None = None


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


def image_files(sources: str | Sequence[str], role: str) -> list[Path]:
    """Expand files and folders (sorted; entries that are not image files skipped with one warning) into a list
    of image paths."""
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
            elif not problem and entry.suffix.lower() not in IMAGE_SUFFIXES:
                problem = "not an image file"
            (skipped.append(f"{entry.name} ({problem})") if problem else images.append(entry))
        if skipped:
            rank_zero_warn(f"{role} folder {path}: skipping {len(skipped)} {'entry' if len(skipped) == 1 else 'entries'}: {', '.join(skipped)}")
        if not images:
            raise StyleTransferError(f"{role} folder {path}: no image files in it")
        files += images
    if not files:
        raise StyleTransferError(f"--data.{role}: no images given")
    return files


def pair_name(content: Path, styles: Sequence[Path]) -> str:
    """``<content-stem>__<style-stem>`` (``+``-joined for several styles); a name longer than 200 bytes (a blend
    of many styles) becomes ``<content-stem>__<N>-styles-<hash>``, short and the same on every run."""
    name = f"{content.stem}__{'+'.join(style.stem for style in styles)}"
    if len(name.encode()) <= MAX_NAME_BYTES:
        return name
    digest = hashlib.sha1(name.encode()).hexdigest()[:10]
    short = lambda stem, limit: stem.encode()[:limit].decode(errors="ignore")  # whole UTF-8 characters only
    styles_part = f"{len(styles)}-styles" if len(styles) > 1 else short(styles[0].stem, 60)
    return f"{short(content.stem, 120)}__{styles_part}-{digest}"


class _Steps(Dataset):
    """``length`` items, one per optimisation step; the images live in the module, so an item carries nothing."""

    def __init__(self, length: int) -> None:
        self.length = length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> int:
        return index


class _StepLoader(DataLoader):
    """A loader with nothing to restore: a run resumed mid-epoch just goes on counting steps."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state_dict: dict) -> None:
        pass


class PairDataModule(LightningDataModule):
    """Content/style pairs from image files or folders.

    Files are checked when the module is created (before any compute); pixels are decoded in ``setup``. The
    module being trained reads ``pairs``; the train loader only counts the steps (one item per step, so the
    progress bar shows ``step/max_steps``).

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
    ) -> None:
        super().__init__()
        if not isinstance(image_size, int) or image_size <= 0:
            raise StyleTransferError(f"--data.image_size must be a positive number of pixels, got {image_size!r}")
        if not style_scale > 0:
            raise StyleTransferError(f"--data.style_scale must be positive, got {style_scale!r}")
        contents, styles = image_files(content, "content"), image_files(style, "style")
        weights = [1.0] * len(styles) if style_weights is None else list(style_weights)
        if style_weights is not None and pairing != "blend":
            raise StyleTransferError("--data.style_weights needs --data.pairing blend")
        if len(weights) != len(styles) or not all(w >= 0 for w in weights) or not sum(weights) > 0:
            raise StyleTransferError(
                f"--data.style_weights must be {len(styles)} weights >= 0 (one per style image) with a positive sum, "
                f"got {style_weights}"
            )
        if pairing == "product":
            sources = [(c, (s,)) for c, s in itertools.product(contents, styles)]
        elif pairing == "zip":
            if len(contents) != len(styles) and 1 not in (len(contents), len(styles)):
                raise StyleTransferError(
                    f"--data.pairing zip needs as many content as style images, got {len(contents)} and {len(styles)}"
                )
            zipped = zip(contents * len(styles), styles) if len(contents) == 1 else zip(contents, styles * len(contents))
            sources = [(c, (s,)) for c, s in zipped]
        elif pairing == "blend":
            sources = [(c, tuple(styles)) for c in contents]
        else:
            raise StyleTransferError(f"--data.pairing must be 'product', 'zip' or 'blend', got {pairing!r}")
        self.sources: list[tuple[Path, tuple[Path, ...]]] = sources
        self.style_weights = tuple(w / sum(weights) for w in weights) if pairing == "blend" else (1.0,)
        self.names = [pair_name(c, ss) for c, ss in sources]
        if len(set(self.names)) < len(self.names):
            twice = next(name for name in self.names if self.names.count(name) > 1)
            raise StyleTransferError(f"two pairs are both named {twice!r}: rename one of the images")
        self.image_size, self.style_scale = image_size, style_scale
        self.masks = self._check_masks(masks, pairing, styles, style_weights)
        self.sizes: dict[Path, tuple[int, int]] = {}
        for path, role in self._files():
            with open_image(path, role) as image:
                self.sizes[path] = displayed_size(image)
        for mask in self.masks:
            for content in contents:
                (mw, mh), (cw, ch) = self.sizes[mask], self.sizes[content]
                if abs(mw / mh - cw / ch) > 0.02 * cw / ch:
                    raise StyleTransferError(
                        f"mask {mask}: {mw}x{mh} px, but content {content} is {cw}x{ch} px: a mask needs the "
                        "content's aspect ratio (it is resized to the content)"
                    )
        self.pairs: list[Pair] = []

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

    def setup(self, stage: str) -> None:
        """Decode and resize every image once (pairs that share an image share its tensor)."""
        if self.pairs:
            return
        images = {
            (path, role): load_image(path, self.style_size if role == "style" else self.image_size, role)
            for path, role in self._files()
        }
        self.pairs = [
            Pair(name, images[c, "content"], tuple(images[s, "style"] for s in ss), self.style_weights,
                 self._masks_for(images, images[c, "content"].shape[1:]))
            for name, (c, ss) in zip(self.names, self.sources)
        ]

    def _masks_for(self, images: dict, size: tuple[int, int]) -> Tensor | None:
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

    def train_dataloader(self) -> DataLoader:
        # Lightning needs a loader: one epoch of max_steps items that carry nothing.
        steps = self.trainer.max_steps if self.trainer and self.trainer.max_steps > 0 else 1
        return _StepLoader(_Steps(steps), batch_size=None)
