"""An output folder written as one transaction: the new contents go to a staging folder next to it, which replaces
it as a whole only once complete, under a lock. A failed, killed or concurrent writer never leaves a mix of old and
new files, so the hashes in manifest.json always describe the files beside it.

    <parent>/<name>/            the output folder; every finished write replaces it as a whole
    <parent>/.<name>.lock       flock'ed by the process writing <name> (holds its PID); the kernel releases the lock
                                when that process exits, SIGKILL included, so a lock is never stale. The file stays.
    <parent>/.<name>.staging/   the write in progress. One found on entry is a killed writer's (entry holds the lock,
                                so no live process owns it) and is deleted.
    <parent>/.<name>.old/       the previous folder during the swap (fileio.replace_dir). Found on entry with no
                                <name>, a writer was killed mid-swap: it is put back.

`keep` names results inside the folder that later writes reuse (the calibration cache): they are hard-linked from
the previous folder into the staging folder on entry. Files are only ever replaced (renamed over), never rewritten
in place, so the links cannot change the previous folder, and the results survive the swap.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from edgedeploy import fileio
from edgedeploy.errors import EdgeDeployError, UsageError

MARKER = "report.json"  # every folder a build or validate writes has one (debug precision: precision-debug.json)


class OutputFolder:
    """`with OutputFolder(out) as folder:` write into `folder.staging`, call `folder.commit()` when complete.
    Leaving the block without commit (an error) deletes the staging folder; the previous folder is untouched.
    `lock_for` names the folder whose lock to take instead (validate's report folder inside an artifact folder takes
    the artifact's, so it never runs beside a build of that artifact)."""

    def __init__(self, final: str | os.PathLike, *, keep: Iterable[str] = (),
                 lock_for: str | os.PathLike | None = None, marker: str = MARKER):
        self.final = _named(final)
        self.marker = marker  # the file that shows edgedeploy wrote an existing folder
        self.staging = self.final.with_name(f".{self.final.name}.staging")
        self.keep = list(keep)
        owner = _named(lock_for) if lock_for is not None else self.final
        self.lock_path = owner.with_name(f".{owner.name}.lock")
        self._fd: int | None = None
        self.committed = False

    def __enter__(self) -> OutputFolder:
        self._check_writable()
        try:
            self._fd = _lock(self.lock_path, self.final)
            old = self.final.with_name(f".{self.final.name}.old")
            if not self.final.exists() and old.is_dir():
                os.replace(old, self.final)
            self._check_replaceable()
            if self.staging.exists():
                shutil.rmtree(self.staging)
            self.staging.mkdir()
            for rel in self.keep:
                _link_tree(self.final / rel, self.staging / rel)
        except BaseException as e:
            if self._fd is not None:  # ours to clear only while we hold the lock
                shutil.rmtree(self.staging, ignore_errors=True)
            self._release()
            if isinstance(e, OSError) and (known := fileio.write_error(e)) is not None:
                raise known from e
            raise
        return self

    def commit(self) -> None:
        fileio.replace_dir(self.staging, self.final)
        self.committed = True

    def __exit__(self, kind, error, traceback) -> None:
        if not self.committed:
            shutil.rmtree(self.staging, ignore_errors=True)
        self._release()
        if isinstance(error, EdgeDeployError) and error.where:  # name the file the user will look for
            error.where = error.where.replace(str(self.staging), str(self.final))

    def relocate(self, obj: Any) -> Any:
        """`obj` (JSON-like) with every path into the staging folder pointing into the final folder instead."""
        if isinstance(obj, str):
            return obj.replace(str(self.staging), str(self.final))
        if isinstance(obj, dict):
            return {k: self.relocate(v) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return [self.relocate(v) for v in obj]
        return obj

    def _check_writable(self) -> None:
        """Refuse a folder the user made read-only before anything is written (root passes os.access anyway)."""
        for folder in (self.final, self.final.parent):
            if folder.is_dir() and not os.access(folder, os.W_OK | os.X_OK):
                raise EdgeDeployError("the folder is not writable (permission denied)", where=str(folder),
                                      fix="make it writable (chmod u+w), or choose another --out")

    def _check_replaceable(self) -> None:
        """Only a folder edgedeploy wrote is replaced: a file, or a folder of other files, is refused."""
        if self.final.exists() and not self.final.is_dir():
            raise UsageError("the output path is a file, not a folder", where=str(self.final),
                             fix="choose a folder for --out (it is created if missing)")
        if self.final.is_dir() and any(self.final.iterdir()) and not (self.final / self.marker).is_file():
            raise UsageError(f"the folder holds files but no {self.marker}, so edgedeploy did not write it; it would be "
                             "replaced as a whole, so it was refused", where=str(self.final),
                             fix="choose a new or empty folder for --out, or delete this one")

    def _release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None


def _named(path: str | os.PathLike) -> Path:
    """`path`, made absolute where it has no name of its own to put beside it (".", "..")."""
    path = Path(path)
    return path.resolve() if path.name in ("", ".", "..") else path


def _lock(path: Path, folder: Path) -> int:
    """An exclusive flock on `path`, holding this process's PID; busy is one line naming the folder and the PID."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise EdgeDeployError(f"another edgedeploy process (PID {holder}) is writing this folder",
                              where=str(folder), fix="wait for it to finish, or write to another --out") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _link_tree(src: Path, dst: Path) -> None:
    """Hard-link the files under `src` into `dst` (copy where the file system has no hard links)."""
    if not src.exists():
        return
    if src.is_file():
        dst.parent.mkdir(parents=True, exist_ok=True)
        _link_or_copy(src, dst)
        return
    shutil.copytree(src, dst, copy_function=_link_or_copy, dirs_exist_ok=True)


def _link_or_copy(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


__all__ = ["OutputFolder", "MARKER"]
