"""Output files: written atomically, and checked before a run starts so that a failure at its end loses nothing."""

import os
import stat
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import BinaryIO

from .errors import OptionError


def replace_atomically(path: str | Path, write: Callable[[BinaryIO], object], mode: int = 0o666) -> None:
    """Create ``path`` through ``write(file)`` so that readers see the old file or the new one, never half of one.

    The new content goes to a fresh temporary file in the same folder (a unique name created exclusively, so a
    link planted there is never followed), is flushed to disk, then renamed over ``path`` (which replaces a link
    at ``path`` rather than writing through it). ``mode`` is masked by the umask, as ``open()`` does.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".lightning-style-", suffix=".tmp")
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, mode & ~umask)
        with os.fdopen(fd, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
    except OSError:
        pass  # some filesystems cannot fsync a folder; the rename is atomic all the same


def check_folder(folder: str | Path, owner: str, option: str) -> None:
    """Raise unless ``folder`` exists as a writable folder or can be created; creates nothing.

    Raises:
        OptionError: ``<owner>(<option>='<folder>') cannot write there (...)``.
    """
    absolute = Path(folder).expanduser().absolute()
    existing = next(path for path in [absolute, *absolute.parents] if os.path.lexists(path))
    if not existing.is_dir():
        problem = f"{existing} is not a folder"
    elif not os.access(existing, os.W_OK | os.X_OK):
        problem = "read-only file system" if _read_only_mount(existing) else "permission denied"
    else:
        return
    raise OptionError(owner, option, str(folder), f"cannot write there ({problem})")


def _read_only_mount(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def _can_override(path: Path) -> bool:
    """Whether this process may replace another user's file in a sticky folder (root with CAP_FOWNER)."""
    if os.geteuid() != 0:
        return False
    try:
        with open("/proc/self/status") as status:
            capabilities = int(next(line for line in status if line.startswith("CapEff:")).split()[1], 16)
        return bool(capabilities & (1 << 3))  # CAP_FOWNER
    except (OSError, StopIteration, ValueError):
        return True


def check_outputs(folder: str | Path, names: Iterable[str]) -> None:
    """Raise if one of the files ``<folder>/<name>`` could not be (re)placed at the end of a run: a name too long
    for the filesystem, an existing file that is read-only, a folder in its place, or a file owned by another user
    in a sticky folder (such as ``/tmp``)."""
    folder = Path(folder).expanduser()
    try:
        limit = os.pathconf(folder if folder.is_dir() else next(p for p in folder.absolute().parents if p.is_dir()),
                            "PC_NAME_MAX")
    except (OSError, ValueError):
        limit = 255
    sticky = folder.is_dir() and bool(folder.stat().st_mode & stat.S_ISVTX)
    for name in names:
        path = folder / name
        if len(os.fsencode(path.name)) > limit:
            raise _bad_output(folder, f"cannot hold the output name {path.name!r}: longer than the filesystem "
                                      f"allows ({limit} bytes); rename the images")
        if not os.path.lexists(path) or path.is_symlink():
            continue  # a link is replaced, not written through
        info = path.stat()
        if stat.S_ISDIR(info.st_mode):
            raise _bad_output(folder, f"holds a folder, {path.name}, where a result would go; move it away")
        if not info.st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH):
            raise _bad_output(folder, f"holds {path.name}, which is read-only; make it writable or choose another "
                                      "folder")
        if sticky and os.geteuid() not in (info.st_uid, folder.stat().st_uid) and not _can_override(path):
            raise _bad_output(folder, f"holds {path.name}, which belongs to another user in a shared folder, so it "
                                      "cannot be replaced; choose another folder")


def _bad_output(folder: Path, problem: str) -> OptionError:
    return OptionError("ImageWriter", "dir", str(folder), problem)
