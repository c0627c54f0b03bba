"""Atomic artifact writes, content hashes, and reading input files without trusting them.

Every artifact goes to a temporary file in the destination folder, is fsynced, then renamed over the target, so a
killed or failed build never leaves a partial file or replaces a good artifact with a broken one. A write that fails
for want of space or permission is one EdgeDeployError naming the file (`write_error`), not a traceback.

An input file (a config, a baseline, a manifest, a data file) is opened first and checked after (`open_input`): what
is not a regular file (a FIFO would block forever, /dev/zero never ends, a folder has no bytes) or is larger than the
reader's budget is refused with one line before a byte is read.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from edgedeploy.errors import FAILURE, USAGE, EdgeDeployError, UsageError

# why a write fails that the user can fix, and how: errno -> (what, fix, exit code)
_WRITE_ERRORS = {
    errno.ENOSPC: ("no space left on the device", "free space on that disk, or write to another folder", FAILURE),
    errno.EDQUOT: ("disk quota exceeded", "free space within your quota, or write to another folder", FAILURE),
    errno.EFBIG: ("file too large (the file system's or the process's file size limit, `ulimit -f`)",
                  "raise the file size limit, or write to another file system", FAILURE),
    errno.EACCES: ("permission denied", "make the folder writable, or write to another folder", FAILURE),
    errno.EPERM: ("operation not permitted", "make the folder writable, or write to another folder", FAILURE),
    errno.EROFS: ("read-only file system", "write to a writable folder", FAILURE),
    errno.EIO: ("input/output error (the disk or the network file system failed)",
                "check the disk (dmesg), or write to another folder", FAILURE),
    # the path itself is wrong: usage errors (the CLI refuses these before any work; this is the backstop)
    errno.ENAMETOOLONG: ("file name too long", "choose a shorter path", USAGE),
    errno.ENOTDIR: ("a part of the path is a file, not a folder", "choose a path whose parents are folders", USAGE),
    errno.EISDIR: ("the path is a folder, not a file", "name a file, not a folder", USAGE),
    errno.ELOOP: ("too many levels of symbolic links, or a symbolic link where none is followed",
                  "choose a path without symbolic links", USAGE),
}


def write_error(error: OSError, path: str | os.PathLike | None = None) -> EdgeDeployError | None:
    """The one-line error for a write that failed for want of space or permission, or on a path that cannot be
    written (None for any other OSError); `path` names the file when the OSError does not (a failed write() carries
    no file name)."""
    known = _WRITE_ERRORS.get(error.errno)
    if known is None:
        return None
    where = path if path is not None else error.filename
    return EdgeDeployError(f"cannot write: {known[0]}", where=None if where is None else os.fspath(where),
                           fix=f"{known[1]}; nothing was replaced", exit_code=known[2])


_FILE_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a device"),
               (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def file_kind(mode: int) -> str:
    """What a non-regular file is, in words."""
    return next((name for test, name in _FILE_KINDS if test(mode)), "not a regular file")


@contextlib.contextmanager
def open_input(path: str | os.PathLike, what: str, *, max_bytes: int | None = None,
               fix: str = "check the path") -> Iterator[BinaryIO]:
    """`path` opened for reading, refused (UsageError naming it) when it is missing, unreadable, not a regular file,
    or larger than `max_bytes`. Opened before it is checked (O_NONBLOCK: opening a FIFO does not wait for a writer),
    so what is checked is what is read."""
    path = os.fspath(path)
    if "\0" in path:
        raise UsageError(f"the {what} path contains a NUL character", where=repr(path), fix=fix)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise UsageError(f"{what} not found", where=path, fix=fix) from None
    except OSError as e:
        raise UsageError(f"cannot read the {what}: {e.strerror.lower() if e.strerror else e}", where=path,
                         fix=fix) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UsageError(f"the {what} is {file_kind(st.st_mode)}, not a file", where=path,
                             fix=f"name a regular file; {fix}")
        if max_bytes is not None and st.st_size > max_bytes:
            raise UsageError(f"the {what} is {st.st_size / 2**20:.1f} MiB, more than the {max_bytes / 2**20:.0f} "
                             f"MiB such a file may have", where=path, fix=f"is this the right file? {fix}")
        f = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with f:
        yield f


def read_input(path: str | os.PathLike, what: str, *, max_bytes: int, fix: str = "check the path") -> bytes:
    """The bytes of an input file, refused as `open_input` refuses it (also when it grows past `max_bytes`)."""
    with open_input(path, what, max_bytes=max_bytes, fix=fix) as f:
        try:
            data = f.read(max_bytes + 1)
        except OSError as e:
            raise UsageError(f"cannot read the {what}: {e.strerror or e}", where=os.fspath(path), fix=fix) from None
    if len(data) > max_bytes:
        raise UsageError(f"the {what} is more than the {max_bytes / 2**20:.0f} MiB such a file may have",
                         where=os.fspath(path), fix=fix)
    return data


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb") -> Iterator[BinaryIO]:
    """Open a temporary sibling of `path` for writing; on success fsync and rename it over `path`."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise (write_error(e, path) or e) from e
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; artifacts get the permissions of a normal file
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(e, OSError) and (known := write_error(e, path)) is not None:
            raise known from e
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_open(path, "wb") as f:
        f.write(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):  # numpy scalars and arrays
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def replace_dir(staged: str | os.PathLike, final: str | os.PathLike) -> None:
    """Swap a fully written `staged` folder in for `final`; the old folder survives until the new one is in place.
    Renames never follow a symbolic link, and one found where the old folder goes is removed, not followed."""
    staged, final = Path(staged), Path(final)
    old = final.with_name(f".{final.name}.old")
    remove(old)
    if os.path.lexists(final):
        os.replace(final, old)
    os.replace(staged, final)
    _fsync_dir(final.parent)
    remove(old)


def remove(path: str | os.PathLike) -> None:
    """Delete `path` if it exists: a folder with its contents; a symbolic link or file itself (never its target)."""
    path = Path(path)
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


def staging_dir(final: str | os.PathLike) -> Path:
    """A fresh temporary folder next to `final`, for writing an artifact made of several files."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    staged = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    staged.chmod(0o777 & ~_umask())
    return staged
