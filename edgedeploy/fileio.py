"""Atomic artifact writes and content hashes.

Every artifact goes to a temporary file in the destination folder, is fsynced, then renamed over the target, so a
killed or failed build never leaves a partial file or replaces a good artifact with a broken one. A write that fails
for want of space or permission is one EdgeDeployError naming the file (`write_error`), not a traceback.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from edgedeploy.errors import EdgeDeployError

# why a write fails that the user can fix, and how: errno -> (what, fix)
_WRITE_ERRORS = {
    errno.ENOSPC: ("no space left on the device", "free space on that disk, or write to another folder"),
    errno.EDQUOT: ("disk quota exceeded", "free space within your quota, or write to another folder"),
    errno.EFBIG: ("file too large (the file system's or the process's file size limit, `ulimit -f`)",
                  "raise the file size limit, or write to another file system"),
    errno.EACCES: ("permission denied", "make the folder writable, or write to another folder"),
    errno.EPERM: ("operation not permitted", "make the folder writable, or write to another folder"),
    errno.EROFS: ("read-only file system", "write to a writable folder"),
}


def write_error(error: OSError, path: str | os.PathLike | None = None) -> EdgeDeployError | None:
    """The one-line error for a write that failed for want of space or permission (None for any other OSError);
    `path` names the file when the OSError does not (a failed write() carries no file name)."""
    known = _WRITE_ERRORS.get(error.errno)
    if known is None:
        return None
    where = path if path is not None else error.filename
    return EdgeDeployError(f"cannot write: {known[0]}", where=None if where is None else os.fspath(where),
                           fix=f"{known[1]}; nothing was replaced")


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
    """Swap a fully written `staged` folder in for `final`; the old folder survives until the new one is in place."""
    staged, final = Path(staged), Path(final)
    old = final.with_name(f".{final.name}.old")
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        os.replace(final, old)
    os.replace(staged, final)
    _fsync_dir(final.parent)
    if old.exists():
        shutil.rmtree(old)


def staging_dir(final: str | os.PathLike) -> Path:
    """A fresh temporary folder next to `final`, for writing an artifact made of several files."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    staged = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    staged.chmod(0o777 & ~_umask())
    return staged
