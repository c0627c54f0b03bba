"""Output folders: where a build or a report may be written, written as one transaction, and locked.

A folder is written as a whole: the new contents go to a staging folder next to it, which replaces it only once
complete, under a lock. A failed, killed or concurrent writer never leaves a mix of old and new files, so the hashes in
manifest.json always describe the files beside it.

    <parent>/<name>/            the output folder; every finished write replaces it as a whole
    <parent>/.<name>.lock       flock'ed by every process writing or reading <name> (the writer writes its PID there);
                                the kernel releases a lock when its process exits, SIGKILL included, so a lock is never
                                stale. The file stays. It is opened with O_NOFOLLOW: a symbolic link (or anything but
                                a plain file) planted there is refused, never written through.
    <parent>/.<name>.staging/   the write in progress. One found on entry is a killed writer's (entry holds the lock,
                                so no live process owns it) and is deleted.
    <parent>/.<name>.old/       the previous folder during the swap (fileio.replace_dir). Found on entry with no
                                <name>, a writer was killed mid-swap: it is put back.

Kinds. A build folder holds `edgedeploy-build.json` (and manifest.json); a report folder (`edgedeploy validate`,
`edgedeploy debug precision`) holds `edgedeploy-report.json`; a bundle folder its `bundle.json`. A write replaces
only an empty folder or one of its own kind, and is refused inside any edgedeploy folder (the next write there would
delete it); a report folder is also refused where it is or holds a build folder. Folders written before the markers are recognised by their report.json
(its `kind`: build or validate) or precision-debug.json.

Locks. A build (and `debug precision`, which writes the artifact's calibration cache) holds the folder's lock
exclusively; `validate` holds a shared lock on the build folder it reads for its whole run. Whoever comes second stops
at once with one line naming the holder's PID (read from /proc/locks, else from the lock file) instead of waiting:
a build never replaces an artifact that a running validate is checking, and a validate never checks one that is being
replaced.

Paths (`output_path`). The output path is checked before any work: a NUL, the file system root, a name too long for
its staging folder beside it, a file or a dangling symbolic link among its parents, and a symbolic link as the folder
itself (a write would follow it) are refused with one line; symbolic links among the parents are resolved once, so
the folder, its lock and its staging folder are always named by one real path.

`keep` names results inside the folder that later writes reuse (the calibration cache): they are hard-linked from
the previous folder into the staging folder on entry. Files are only ever replaced (renamed over), never rewritten
in place, so the links cannot change the previous folder, and the results survive the swap.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import signal
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from edgedeploy import __version__, fileio
from edgedeploy.errors import EdgeDeployError, UsageError

BUILD_MARKER = "edgedeploy-build.json"
REPORT_MARKER = "edgedeploy-report.json"
BUNDLE_MARKER = "bundle.json"  # the bundle's own manifest (edgedeploy.bundle.manifest), written by the bundle
Kind = Literal["build", "report", "bundle"]
_MARKERS: dict[str, str] = {"build": BUILD_MARKER, "report": REPORT_MARKER, "bundle": BUNDLE_MARKER}
_WRITING: list[Path] = []  # the folders this process is writing and has not committed (for an interrupted command)
WRITTEN: list[Path] = []  # the folders this process has replaced


def folders_in_progress() -> list[Path]:
    """The output folders this process has checked or entered and not yet replaced: an interrupted command names them
    (unchanged, since a folder is replaced only as a whole)."""
    return list(_WRITING)
_WHAT = {"build": "a build folder", "report": "a report folder (edgedeploy validate / debug precision)",
         "bundle": "a bundle folder (edgedeploy bundle)"}
_LONGEST_SIBLING = ".staging"  # the longest suffix of the names written beside the folder (.NAME.staging)
_INNER_PATH_ROOM = 256  # the deepest path a build writes inside its folder, with room to spare


def folder_kind(path: Path) -> Kind | None:
    """What edgedeploy wrote `path` as, by its marker (or, for folders written before markers, by its files)."""
    if path.is_symlink() or not path.is_dir():
        return None
    if (path / BUILD_MARKER).is_file():
        return "build"
    if (path / REPORT_MARKER).is_file():
        return "report"
    if (path / BUNDLE_MARKER).is_file():
        return "bundle"
    if (path / "precision-debug.json").is_file():
        return "report"
    return {"build": "build", "validate": "report"}.get(_legacy_report_kind(path / "report.json"))


def _legacy_report_kind(report: Path) -> str | None:
    """`kind` of an edgedeploy report.json (folders written before the markers say what they are only there)."""
    try:
        with fileio.open_input(report, "report.json", max_bytes=64 << 20) as f:
            data = json.load(f)
    except (UsageError, ValueError, RecursionError, OSError):
        return None
    if isinstance(data, dict) and str(data.get("schema", "")).startswith("edgedeploy.report/"):
        return data.get("kind")
    return None


def output_path(path: str | os.PathLike, flag: str = "--out") -> Path:
    """`path` as the absolute path of the output folder to write, its parents' symbolic links resolved; UsageError
    for what cannot be written safely (see the module's docstring). Nothing is created."""
    text = os.fspath(path)
    if "\0" in text:
        raise UsageError(f"{flag} contains a NUL character", where=repr(text), fix="choose another folder name")
    if not text:
        raise UsageError(f"{flag} is empty", fix="name the output folder")
    given = Path(text)
    if given.name in ("", ".", ".."):
        given = Path(os.path.realpath(text))
    if not given.name:
        raise UsageError(f"{flag} is the file system root; edgedeploy replaces its output folder as a whole",
                         where=text, fix="choose a folder of its own, e.g. --out edgedeploy-out/NAME")
    parent = _real_parent(given.parent, text, flag)
    final = parent / given.name
    size, longest = len(os.fsencode(given.name)), _name_max(parent) - len(f".{_LONGEST_SIBLING}")
    if size > longest:
        raise UsageError(f"the folder name is {size} bytes; the file system allows {longest} here (edgedeploy writes "
                         f".NAME{_LONGEST_SIBLING} beside it)", where=text, fix="choose a shorter name")
    if len(os.fsencode(str(final))) + _INNER_PATH_ROOM > os.pathconf("/", "PC_PATH_MAX"):
        raise UsageError("the path is too long for the files written inside it", where=text,
                         fix="choose a shorter path")
    if final.is_symlink():
        target = os.readlink(final)
        dangling = "" if final.exists() else "dangling "
        raise UsageError(f"{flag} is a {dangling}symbolic link (to {target}); refused, since writing through it would "
                         "replace what it points to", where=str(final),
                         fix="pass the folder it points to, or remove the link")
    return final


def _real_parent(parent: Path, text: str, flag: str) -> Path:
    """`parent` with every existing component's symbolic links resolved; refused when a component is a file or a
    dangling link (creating the missing folders would then fail, or follow the link)."""
    real = Path(os.path.realpath(parent))
    probe = Path(os.path.abspath(parent))
    for part in [probe, *probe.parents][::-1]:
        if part.is_symlink() and not part.exists():
            raise UsageError(f"{flag} lies under a dangling symbolic link ({part} → {os.readlink(part)})",
                             where=text, fix="fix or remove the link, or choose another folder")
        if part.exists() and not part.is_dir():
            raise UsageError(f"{flag} lies under a file, not a folder ({part})", where=text,
                             fix="choose a path whose parents are folders")
    return real


def _name_max(parent: Path) -> int:
    existing = next(p for p in [parent, *parent.parents] if p.is_dir())
    try:
        return os.pathconf(existing, "PC_NAME_MAX")
    except (OSError, ValueError):
        return 255


def report_path(artifact: str | os.PathLike, out: str | os.PathLike | None, suffix: str) -> Path:
    """The report folder of a command reading the build folder `artifact` (validate, debug precision): `out`, or
    `<artifact>-<suffix>` beside it; refused (before any work) where it is, holds or lies inside that build folder."""
    artifact = Path(os.path.realpath(artifact))
    final = output_path(out if out is not None else artifact.with_name(f"{artifact.name}-{suffix}"))
    if final.is_relative_to(artifact) or artifact.is_relative_to(final):
        what = "is" if final == artifact else "lies inside" if final.is_relative_to(artifact) else "holds"
        raise UsageError(f"--out {what} the build folder it reports on ({artifact}); a build replaces that folder "
                         "as a whole, so the report would replace the build or be lost with it", where=str(final),
                         fix=f"leave --out out (the report goes to {artifact.name}-{suffix} beside the build) or "
                             "choose a folder outside it")
    return final


def output_file(path: str | os.PathLike, flag: str, within: Path | None = None) -> Path:
    """`path` checked as a file to write (--junit, --output, --report): not a folder, a device or a FIFO, not a
    symbolic link, not inside an edgedeploy folder (replaced as a whole there, or replacing the build's own files)
    other than `within`, the folder the same command writes."""
    text = os.fspath(path)
    if "\0" in text:
        raise UsageError(f"{flag} contains a NUL character", where=repr(text), fix="choose another file name")
    given = Path(text)
    if given.name in ("", ".", ".."):
        raise UsageError(f"{flag} names a folder, not a file", where=text, fix=f"give {flag} a file name")
    final = _real_parent(given.parent, text, flag) / given.name
    if len(os.fsencode(given.name)) + 16 > _name_max(final.parent):  # the temporary file beside it: .NAME.XXXXXX.tmp
        raise UsageError(f"the file name is {len(os.fsencode(given.name))} bytes, too long for this file system",
                         where=text, fix="choose a shorter name")
    if final.is_symlink():
        raise UsageError(f"{flag} is a symbolic link (to {os.readlink(final)}); refused", where=text,
                         fix="name the file itself, or remove the link")
    if final.exists() and not final.is_file():
        raise UsageError(f"{flag} is {fileio.file_kind(final.stat().st_mode)}, not a file", where=text,
                         fix=f"give {flag} a file path")
    for folder in final.parents:
        if folder == within:
            break
        kind = folder_kind(folder)
        if kind is not None:
            raise UsageError(f"{flag} lies inside {_WHAT[kind]} ({folder}), which edgedeploy replaces as a whole",
                             where=text, fix="write it outside that folder")
    return final


class FolderLock:
    """`with FolderLock(folder, shared=True):` hold `folder`'s lock (exclusive, or shared with other readers)."""

    def __init__(self, folder: str | os.PathLike, *, shared: bool = False):
        self.folder = Path(os.path.realpath(folder))
        self.path = self.folder.with_name(f".{self.folder.name}.lock")
        self.shared = shared
        self._fd: int | None = None

    def __enter__(self) -> FolderLock:
        self._fd = _lock(self.path, self.folder, self.shared)
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None


class OutputFolder:
    """`with OutputFolder(out) as folder:` write into `folder.staging`, call `folder.commit()` when complete.
    Leaving the block without commit (an error) deletes the staging folder; the previous folder is untouched.
    `kind` is what the folder becomes (build or report); the path is checked here, where it may go on entry."""

    def __init__(self, final: str | os.PathLike, *, kind: Kind = "build", keep: Iterable[str] = (),
                 flag: str = "--out"):
        self.final = output_path(final, flag)
        self.kind = kind
        self.flag = flag
        self.staging = self.final.with_name(f".{self.final.name}.staging")
        self.keep = list(keep)
        self._lock = FolderLock(self.final)
        self.committed = False

    def __enter__(self) -> OutputFolder:
        self._writing()
        self._check_writable()
        try:
            self._lock.__enter__()
            old = self.final.with_name(f".{self.final.name}.old")
            if not os.path.lexists(self.final) and old.is_dir() and not old.is_symlink():
                os.replace(old, self.final)
            self._check_placement()
            fileio.remove(self.staging)
            self.staging.mkdir()
            for rel in self.keep:
                _link_tree(self.final / rel, self.staging / rel)
        except BaseException as e:
            if self._lock._fd is not None:  # ours to clear only while we hold the lock
                shutil.rmtree(self.staging, ignore_errors=True)
            self._lock.release()
            if isinstance(e, OSError) and (known := fileio.write_error(e)) is not None:
                raise known from e
            raise
        return self

    def _writing(self) -> None:
        if self.final not in _WRITING:
            _WRITING.append(self.final)

    def check(self) -> Path:
        """The checks entry makes, made now without the lock, to refuse a path before any work; the path."""
        self._writing()
        self._check_writable()
        self._check_placement()
        return self.final

    def commit(self) -> None:
        marker = self.staging / _MARKERS[self.kind]
        if not marker.exists():  # a bundle writes its own (bundle.json)
            fileio.write_json(marker, {"schema": "edgedeploy.folder/1", "kind": self.kind, "edgedeploy": __version__})
        held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})  # the swap is not cut in two
        try:
            fileio.replace_dir(self.staging, self.final)
            self.committed = True
            if self.final in _WRITING:
                _WRITING.remove(self.final)
            WRITTEN.append(self.final)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)

    def __exit__(self, kind, error, traceback) -> None:
        if not self.committed:
            shutil.rmtree(self.staging, ignore_errors=True)
        self._lock.release()
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
                                      fix=f"make it writable (chmod u+w), or choose another {self.flag}")

    def _check_placement(self) -> None:
        """Replace only an empty folder or one of this kind, never inside an edgedeploy folder, and a report folder
        never where it is or holds a build (the checks run under the lock, so what is checked is what is replaced)."""
        for parent in self.final.parents:
            inside = folder_kind(parent)
            if inside is not None:
                raise UsageError(f"{self.flag} lies inside {_WHAT[inside]} ({parent}), which edgedeploy replaces as a "
                                 "whole, so what is written there would be lost", where=str(self.final),
                                 fix=f"choose a {self.flag} outside it")
        if os.path.lexists(self.final) and not self.final.is_dir():
            raise UsageError("the output path is a file, not a folder", where=str(self.final),
                             fix=f"choose a folder for {self.flag} (it is created if missing)")
        if not self.final.is_dir():
            return
        found = folder_kind(self.final)
        if found is not None and found != self.kind:
            what = ("the report would replace the build: its artifact, manifest.json and reference.npz"
                    if found == "build" else "a build would replace the reports")
            raise UsageError(f"{self.flag} is {_WHAT[found]}; {what}", where=str(self.final),
                             fix=f"choose another {self.flag}" + (" (or leave it out: reports go beside the build "
                                                                  "folder)" if self.kind == "report" else ""))
        if found is None and any(self.final.iterdir()):
            raise UsageError(f"the folder holds files but no {_MARKERS[self.kind]}, so edgedeploy did not write it; it "
                             "would be replaced as a whole, so it was refused", where=str(self.final),
                             fix=f"choose a new or empty folder for {self.flag}, or delete this one")
        for marker in (BUILD_MARKER, "report.json"):
            for inner in self.final.rglob(marker):
                if inner.parent != self.final and folder_kind(inner.parent) == "build":
                    raise UsageError(f"{self.flag} holds the build folder {inner.parent}; replacing it as a whole "
                                     "would delete that build", where=str(self.final),
                                     fix=f"choose another {self.flag}, or move the build out of it")


def _lock(path: Path, folder: Path, shared: bool) -> int:
    """A flock on `path` (exclusive, or `shared`), the exclusive holder's PID written into it; busy is one line naming
    the folder and the holder's PID. The lock file is never followed: a symbolic link, a hard link or anything but a
    plain file there is refused."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o644)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise EdgeDeployError("the lock file is a symbolic link; refused, since writing through it would change "
                                  "the file it points to", where=str(path),
                                  fix="remove the link (you did not make it: check who can write to this folder)"
                                  ) from None
        if e.errno == errno.EISDIR:
            raise EdgeDeployError("the lock file is a folder, not edgedeploy's own lock file; refused",
                                  where=str(path), fix="remove it (you did not make it: check who can write to this "
                                                       "folder)") from None
        if shared and e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            return _read_only_lock(path, folder)
        raise (fileio.write_error(e, path) or e) from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
        os.close(fd)
        what = fileio.file_kind(st.st_mode) if not stat.S_ISREG(st.st_mode) else "a file with other hard links"
        raise EdgeDeployError(f"the lock file is {what}, not edgedeploy's own lock file; refused", where=str(path),
                              fix="remove it (you did not make it: check who can write to this folder)")
    _flock(fd, path, folder, shared)
    if not shared:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _read_only_lock(path: Path, folder: Path) -> int:
    """A shared lock where the lock file cannot be created (a folder the reader may not write): taken on the
    existing lock file, or none at all when there is none (no build can have written there without one)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)  # a descriptor to close like any other
    _flock(fd, path, folder, shared=True)
    return fd


def _flock(fd: int, path: Path, folder: Path, shared: bool) -> None:
    try:
        fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except BlockingIOError:
        pid, writing = _holder(fd)
        os.close(fd)
        if writing:
            raise EdgeDeployError(f"another edgedeploy process (PID {pid}) is writing this folder", where=str(folder),
                                  fix="wait for it to finish" + ("" if shared else ", or write to another --out")
                                  ) from None
        raise EdgeDeployError(f"edgedeploy validate (PID {pid}) is reading this folder; a build now would replace the "
                              "artifact it is checking", where=str(folder),
                              fix="wait for it to finish, or write to another --out") from None


def _holder(fd: int) -> tuple[str, bool]:
    """(PID, whether it holds the lock exclusively) of a process holding the flock on `fd`'s file: from
    /proc/locks, which lists every holder; else the PID the last exclusive holder wrote into the file."""
    st = os.fstat(fd)
    inode = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    try:
        with open("/proc/locks") as f:
            for line in f:
                fields = line.split()
                if "->" not in fields and len(fields) > 5 and fields[1] == "FLOCK" and fields[5] == inode:
                    return fields[4], fields[3] == "WRITE"
    except OSError:
        pass
    written = os.pread(fd, 32, 0).decode(errors="replace").strip()
    return (written or "unknown"), True


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


__all__ = ["OutputFolder", "FolderLock", "folders_in_progress", "WRITTEN", "output_path", "output_file", "report_path", "folder_kind", "BUILD_MARKER",
           "REPORT_MARKER"]
