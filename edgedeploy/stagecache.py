"""The stage cache: export and optimize results kept by content in the user's cache folder, shared by every output
folder, so a rebuild with another `--precision` or `--target` (or into another folder) skips torch's exporter.

    $XDG_CACHE_HOME/edgedeploy/stages/<stage>/<key16>/     (default ~/.cache/edgedeploy; `edgedeploy cache ls|clear`)
        export:   raw.onnx (+ its external data), reference.npz, export.json
        optimize: deploy.onnx, optimize.json
        key.json  the key material, and the size and sha256 of every file (written last)

Entries are made and checked by edgedeploy.precision.cache, the scheme calibration results use: written into a
staging folder and swapped in whole, reused only when the key matches *and* every file still has its recorded size
and hash (a damaged entry is refused, deleted and re-made), and a miss names the fields that changed against the
nearest entry of the same stage, for the report.

What a key holds (anything else that changes the result is a reason to pass `--no-cache`):

- export from PyTorch: the factory name and kwargs, the checkpoint's sha256, the *factory's code*: the source of its
  module and of every module it imports, followed transitively through `import` statements, that is not installed
  in site-packages (the project's own code, editable installs, PYTHONPATH), always including the factory's own
  top-level package wherever it lives; an imported installed package counts by its distribution's version, the
  standard library by the Python version. Imports made at run time (`importlib.import_module`, `__import__`, plugins
  looked up by name) and data files the factory reads are *not* seen. A build with `--trust-code` (a pickled
  checkpoint, which may bring its own classes) is never cached, nor (Python API) one whose factory modules the
  calling process imported itself before the build: their code in memory may no longer be what their files say
  (`importlib.reload` after edgedeploy's own import is not detected either). Also the input specs and output names, the export
  settings, the validation inputs and labels (sha256 of the arrays: the reference outputs are computed on them), and
  the versions of torch, onnx, onnxscript, onnxruntime, numpy and Python.
- export from an ONNX file: its sha256 (and its external data files'), the input specs and output names, the
  validation inputs and labels, and the versions of onnx, onnxruntime, numpy and Python.
- optimize: the sha256 of raw.onnx, the optimize settings, the sha256 of the real inputs every pass is verified on,
  and the versions of onnx, onnx-ir, onnxsim, onnxslim, onnxruntime, numpy and Python.
- both: edgedeploy's version and the sha256 of its own source files, so a changed pass or exporter wrapper re-runs
  (this also covers the bundled demo and benchmark models, which live in the package).

Who may write the cache (threat model). A key says what an entry was made from; key.json's file table says its files
are still what was written. Neither says *who* wrote them: anyone able to write an entry can replace raw.onnx and
reference.npz together and rehash key.json, and the next build would reuse a model that is not the source's, with a
reference that agrees with it (so validation passes). So:

- the cache is the user's own, as OpenSSH treats ~/.ssh: the cache root, `stages/`, each stage folder and each entry
  must be owned by the user, not group- or world-writable, and not a symbolic link; otherwise the cache is skipped
  for the build, with a warning naming the folder and the fix (`chmod go-w`, or point XDG_CACHE_HOME elsewhere);
- every entry is sealed: `seals/<stage>/<key16>` holds an HMAC-SHA256 of its key.json under a per-user secret,
  `secret.key` in the cache root (32 random bytes, mode 0600, made on first use). An entry whose seal is missing or
  wrong (made by someone without the secret, or before seals) is refused, deleted and re-made. Whoever can read the
  user's 0600 files can forge a seal; that is the user (or root), whom no cache check can keep out.
- a cache that cannot be written (XDG_CACHE_HOME or HOME a file, a read-only file system, no permission) is skipped
  with a warning; the build goes on without it.

`edgedeploy cache clear` removes only what it can prove is an entry (a real folder named by a key, holding key.json),
never follows a symbolic link (a linked cache root or stage folder is refused), and counts what it removed.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import hmac
import importlib.metadata
import importlib.util
import os
import platform
import re
import secrets
import shutil
import stat
import sys
import sysconfig
import time
from pathlib import Path
from typing import Any, Callable

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edgedeploy import __version__, fileio
from edgedeploy.errors import EdgeDeployError
from edgedeploy.precision.cache import KEY_FILE, CacheEntry, CalibrationCache, key_of
from edgedeploy.sources import families
from edgedeploy.versions import package_versions

STAGES = ("export", "optimize")
_MAX_MODULES = 5000  # a factory importing more of the project than this is hashed that far, and says so
_EXPORT_LIBRARIES = ("torch", "onnx", "onnxscript", "onnxruntime", "numpy")
_ONNX_LIBRARIES = ("onnx", "onnxruntime", "numpy")
_OPTIMIZE_LIBRARIES = ("onnx", "onnx-ir", "onnxsim", "onnxslim", "onnxruntime", "numpy")


def default_root() -> Path:
    """$XDG_CACHE_HOME/edgedeploy, or ~/.cache/edgedeploy."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "edgedeploy"


def _versions(names: tuple[str, ...]) -> dict[str, str | None]:
    return {"python": platform.python_version(), **package_versions(names)}


@functools.cache
def edgedeploy_code() -> dict[str, str]:
    """edgedeploy's version and the sha256 over its source files (name and bytes, in sorted order)."""
    root = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(path.relative_to(root).as_posix().encode() + b"\0")
        h.update(path.read_bytes())
    return {"version": __version__, "code_sha256": h.hexdigest()}


# ------------------------------------------------------------------------------------------- factory code
def _installed_roots() -> list[Path]:
    paths = sysconfig.get_paths()
    roots = {paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib") if k in paths}
    roots |= {p for p in sys.path if p and os.path.basename(p) in ("site-packages", "dist-packages")}
    return [Path(p).resolve() for p in roots]


def _is_installed(path: Path, roots: list[Path]) -> bool:
    return any(path.is_relative_to(r) for r in roots)


def _imports(source: str, module: str, is_package: bool) -> set[str]:
    """Absolute names of the modules an import statement may load (`from a import b` gives a and a.b)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set()
    package = module if is_package else module.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] if node.level > 1 else parts)
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            if base:
                out.add(base)
                out |= {f"{base}.{alias.name}" for alias in node.names if alias.name != "*"}
    return out


def _distribution_version(top: str) -> str:
    dists = importlib.metadata.packages_distributions().get(top, [])
    versions = []
    for dist in sorted(dists):
        try:
            versions.append(f"{dist} {importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    return ", ".join(versions) or "installed (no distribution metadata)"


def _find_module(name: str):
    """The spec of module `name`, or None (`from a.b import c` where c is not a module). A dotted name is looked
    up only inside a package, so looking up an attribute never imports the module that defines it (finding a
    submodule imports its parent packages, as the export will)."""
    try:
        if "." in name:
            parent = importlib.util.find_spec(name.rpartition(".")[0])
            if parent is None or not parent.submodule_search_locations:
                return None
        return importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None


_SEEN: dict[str, str] = {}  # module file → its sha256 when first hashed here, before this process imported it


def factory_code(factory: str) -> dict[str, Any]:
    """The factory's code as key material: sha256 over the source of every module it reaches through import
    statements outside site-packages and the standard library (and its own top-level package anywhere), and the
    version of each installed top-level package it imports. Finding a submodule imports its parent packages, as the
    export itself will.

    A module this process has already imported runs the code it was imported with, whatever its file says now: it
    counts with the hash its file had when this function first saw it (before the export imported it), and one
    imported before that (by the caller) cannot be vouched for: it is listed under `imported_unseen`, and such an
    export is not cached."""
    start = factory.partition(":")[0]
    own_top = start.split(".")[0]
    roots = _installed_roots()
    stdlib = set(getattr(sys, "stdlib_module_names", ()))
    h = hashlib.sha256()
    hashed: list[str] = []
    installed: dict[str, str] = {}
    unseen: list[str] = []
    preloaded = set(sys.modules)  # finding a submodule below imports its parents: those imports are from now
    seen: set[str] = set()
    queue = [start]
    while queue and len(hashed) < _MAX_MODULES:
        name = queue.pop()
        top = name.split(".")[0]
        if name in seen or top in stdlib or top in installed or top == __package__:
            continue  # edgedeploy's own modules (the demo models) count in edgedeploy_code()
        seen.add(name)
        try:
            top_spec = importlib.util.find_spec(top)
        except (ImportError, ValueError):
            top_spec = None
        if top_spec is None:
            continue  # `from a import name` where name is not a module
        top_file = top_spec.origin if top_spec.origin not in (None, "built-in", "frozen") else None
        top_dirs = list(top_spec.submodule_search_locations or [])
        where = Path(top_dirs[0] if top_dirs else top_file or ".").resolve()
        if top != own_top and (top_file is None and not top_dirs or _is_installed(where, roots)):
            installed[top] = _distribution_version(top)
            continue
        spec = _find_module(name)
        if spec is None or spec.origin in (None, "built-in", "frozen") or not os.path.isfile(spec.origin):
            continue
        path = Path(spec.origin)
        data = path.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        if name not in preloaded:
            _SEEN[str(path)] = digest
        elif str(path) in _SEEN:
            digest = _SEEN[str(path)]
        else:
            unseen.append(name)
        h.update(f"{name}\0{digest}".encode())
        hashed.append(name)
        if path.suffix == ".py":
            found = _imports(data.decode("utf-8", "replace"), name, spec.submodule_search_locations is not None)
            parents = {name.rsplit(".", k)[0] for k in range(1, name.count(".") + 1)}  # their __init__ runs too
            queue.extend(sorted((found | parents) - seen))
    return {"sha256": h.hexdigest(), "modules": sorted(hashed), "installed": dict(sorted(installed.items())),
            **({"imported_unseen": sorted(unseen)} if unseen else {}),
            **({"truncated_at": _MAX_MODULES} if queue and len(hashed) >= _MAX_MODULES else {})}


# ------------------------------------------------------------------------------------------- key material
def _external_files(path: Path) -> list[str]:
    """The external data files an ONNX model names (relative to its folder; checked to stay inside it before)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    names = set()
    for t in model.graph.initializer:
        if t.data_location == onnx.TensorProto.EXTERNAL:
            names |= {e.value for e in t.external_data if e.key == "location"}
    return sorted(names)


def export_material(spec, data_sha256: str, trust_code: bool) -> tuple[dict[str, Any] | None, str]:
    """What the export stage's result (raw.onnx, reference.npz) depends on, or (None, why) when it must not be
    cached."""
    if spec.model.onnx is not None:
        path = Path(spec.model.onnx)
        source: dict[str, Any] = {"kind": "onnx", "sha256": fileio.sha256_file(path),
                                  "external_data": {name: fileio.sha256_file(path.parent / name)
                                                    for name in _external_files(path)}}
        libraries = _versions(_ONNX_LIBRARIES)
    elif trust_code:
        return None, "--trust-code: a pickled checkpoint may bring code the key cannot see"
    elif spec.model.package() is not None:
        model = spec.model
        source = {"kind": model.package(), "name": str(getattr(model, model.package())), "kwargs": model.kwargs,
                  "weights": model.weights, "files_sha256": families.weights_sha256(model),
                  "packages": families.package_versions(model),
                  "preprocess": spec.preprocess.model_dump(mode="json")}
        libraries = _versions(_EXPORT_LIBRARIES)
    else:
        code = factory_code(spec.model.factory)
        if code.get("imported_unseen"):
            return None, (f"{', '.join(code['imported_unseen'])} was imported before this build, so the code in "
                          "memory may differ from its file")
        checkpoint = spec.model.checkpoint
        source = {"kind": "pytorch", "factory": spec.model.factory, "kwargs": spec.model.kwargs,
                  "checkpoint_sha256": fileio.sha256_file(checkpoint) if checkpoint else None, "factory_code": code}
        libraries = _versions(_EXPORT_LIBRARIES)
    return {"stage": "export", "source": source,
            "spec": {"inputs": [i.model_dump(mode="json") for i in spec.inputs], "outputs": list(spec.outputs),
                     "export": spec.export.model_dump(mode="json")},
            "validation_sha256": data_sha256, "libraries": libraries, "edgedeploy": edgedeploy_code()}, ""


def optimize_material(raw_sha256: str, settings: dict[str, Any], verify_sha256: str) -> dict[str, Any]:
    """What the optimize stage's result (deploy.onnx, optimize.json) depends on."""
    return {"stage": "optimize", "raw_sha256": raw_sha256, "settings": settings, "verify_inputs_sha256": verify_sha256,
            "libraries": _versions(_OPTIMIZE_LIBRARIES), "edgedeploy": edgedeploy_code()}


# ------------------------------------------------------------------------------------------- the cache
SECRET_FILE = "secret.key"
SEALS = "seals"
_ENTRY_NAME = re.compile(r"[0-9a-f]{16}")
_MAX_KEY_FILE_BYTES = 16 << 20


class _FileRecord(BaseModel):
    model_config = ConfigDict(extra="ignore")
    size: int = Field(ge=0)
    sha256: str


class KeyFile(BaseModel):
    """key.json of a stage cache entry, as `cache ls` and the cache's own readers read it."""

    model_config = ConfigDict(extra="ignore")
    key: str
    material: dict[str, Any]
    files: dict[str, _FileRecord]


def read_key_file(path: Path) -> KeyFile:
    """A key.json through its typed model; one EdgeDeployError naming the file and the field otherwise."""
    try:
        raw = fileio.read_input(path, "cache key file", max_bytes=_MAX_KEY_FILE_BYTES,
                                fix="remove the entry (edgedeploy cache clear)")
        return KeyFile.model_validate_json(raw)
    except ValidationError as e:
        first = e.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise EdgeDeployError(f"unreadable cache key file: `{field}`: {first['msg']}", where=str(path),
                              fix="remove the entry (edgedeploy cache clear)") from None


def ownership_problem(path: Path) -> str | None:
    """Why `path` (a cache folder or file) is not the user's own, as OpenSSH checks ~/.ssh; None when it is."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(st.st_mode):
        return f"{path} is a symbolic link (to {os.readlink(path)}); the cache must be a real folder of yours"
    if st.st_uid != os.getuid():
        return f"{path} is owned by uid {st.st_uid}, not by you (uid {os.getuid()})"
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"{path} is writable by {'others' if st.st_mode & stat.S_IWOTH else 'its group'} (mode " \
               f"{stat.S_IMODE(st.st_mode):04o}), so anyone there could plant a result"
    return None


def _stderr_warning(text: str) -> None:
    sys.stderr.write(f"warning: {text}\n")
    sys.stderr.flush()


class StageCache:
    """`lookup` an entry for a stage's key material; `restore` a reused one into a folder, or `store` new files.
    A cache that is not the user's own or cannot be written is skipped (module docstring), with one warning."""

    def __init__(self, root: Path | None = None, warn: Callable[[str], None] = _stderr_warning):
        self.root = Path(root) if root is not None else default_root()
        self._results = CalibrationCache(self.root / "stages", what="stage result", remade="re-ran",
                                         nearest=True)
        self._warn = warn
        self._secret: bytes | None = None
        self._skipped: str | None = None
        self._checked = False

    # ------------------------------------------------------------------------------------------ trust
    def _open(self) -> str | None:
        """Check (once) that the cache is the user's and writable, and read or make its secret; why not, or None."""
        if self._checked:
            return self._skipped
        self._checked = True
        why = self._check()
        if why is not None:
            self._skipped = f"stage cache skipped: {why}"
            self._warn(self._skipped)
        return self._skipped

    def _check(self) -> str | None:
        fix_owner = "fix: chmod go-w (and chown) the folder, or set XDG_CACHE_HOME to a folder of your own"
        try:
            self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
            for sub in ("stages", SEALS):
                (self.root / sub).mkdir(exist_ok=True, mode=0o700)
        except OSError as e:
            return (f"{self.root} cannot be made ({e.strerror or e}); the build goes on without it (fix: set "
                    "XDG_CACHE_HOME to a writable folder, or pass --no-cache)")
        for folder in (self.root, self.root / "stages", self.root / SEALS,
                       *(self.root / sub / name for sub in ("stages", SEALS) for name in STAGES)):
            problem = ownership_problem(folder)
            if problem is not None:
                return f"{problem} ({fix_owner})"
        try:
            self._secret = self._read_secret()
        except OSError as e:
            return (f"{self.root / SECRET_FILE} cannot be read or made ({e.strerror or e}; fix: remove it, or set "
                    "XDG_CACHE_HOME to a writable folder of your own)")
        except EdgeDeployError as e:
            return f"{e.what} ({e.fix})"
        return None

    def _read_secret(self) -> bytes:
        path = self.root / SECRET_FILE
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "wb") as f:
                f.write(secrets.token_bytes(32))
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid() or stat.S_IMODE(st.st_mode) & 0o077:
                raise EdgeDeployError(f"{path} is not a private file of yours (mode {stat.S_IMODE(st.st_mode):04o}, "
                                      f"uid {st.st_uid})", fix="fix: remove it (edgedeploy makes a new one, and "
                                                               "re-makes every entry)")
            secret = f.read(64)
        if len(secret) != 32:
            raise EdgeDeployError(f"{path} is not a cache secret ({len(secret)} bytes)",
                                  fix="fix: remove it (edgedeploy makes a new one)")
        return secret

    def _seal_path(self, entry_dir: Path) -> Path:
        return self.root / SEALS / entry_dir.parent.name / entry_dir.name

    def _seal(self, entry_dir: Path) -> str:
        return hmac.new(self._secret, (entry_dir / KEY_FILE).read_bytes(), hashlib.sha256).hexdigest()

    def _unsealed(self, entry: CacheEntry) -> str | None:
        """Why the reused entry cannot be vouched for (ownership, seal), or None."""
        problem = ownership_problem(entry.dir) or ownership_problem(entry.dir / KEY_FILE)
        if problem is not None:
            return problem
        try:
            recorded = self._seal_path(entry.dir).read_text().strip()
            if hmac.compare_digest(recorded, self._seal(entry.dir)):
                return None
        except (OSError, UnicodeDecodeError):
            return f"its seal ({SEALS}/{entry.kind}/{entry.dir.name}) is missing"
        return f"its seal ({SEALS}/{entry.kind}/{entry.dir.name}) does not match key.json (the entry was not written " \
               "by this user's edgedeploy)"

    # ------------------------------------------------------------------------------------------ entries
    def lookup(self, stage: str, material: dict[str, Any]) -> CacheEntry:
        skipped = self._open()
        if skipped is not None:
            key = key_of(material)
            return CacheEntry(stage, key, self.root / "stages" / stage / key[:16], material, "off", skipped)
        entry = self._results.entry(stage, material)
        if entry.reused:
            why = self._unsealed(entry)
            if why is not None:
                fileio.remove(entry.dir)
                fileio.remove(self._seal_path(entry.dir))
                entry = CacheEntry(stage, entry.key, entry.dir, entry.material, "refused",
                                   f"refused and re-made: {why}")
        return entry

    @staticmethod
    def restore(entry: CacheEntry, out_dir: Path, names: list[str]) -> list[Path]:
        """Copy the entry's files `names` (those present) into out_dir; returns the copies."""
        copied = []
        for name in names:
            src = entry.dir / name
            if src.is_file():
                shutil.copyfile(src, out_dir / name)
                copied.append(out_dir / name)
        return copied

    def store(self, entry: CacheEntry, files: list[Path], records: dict[str, Any] | None = None) -> None:
        """Make `files` and the JSON `records` (name → object) the entry's result: copied into a staging folder,
        the key file written last, swapped in, and sealed. A cache that cannot be written (a full disk) is
        skipped."""
        if entry.status == "off" or self._secret is None:
            return
        staged = None
        try:
            staged = entry.staging()
            for path in files:
                shutil.copyfile(path, staged / path.name)
            for name, obj in (records or {}).items():
                fileio.write_json(staged / name, obj)
            entry.commit(staged)
            self._seal_path(entry.dir).parent.mkdir(exist_ok=True, mode=0o700)
            fileio.write_text(self._seal_path(entry.dir), self._seal(entry.dir) + "\n")
        except OSError:
            if staged is not None:
                shutil.rmtree(staged, ignore_errors=True)  # a full cache disk must not fail the build
            return

    def _real_folder(self, path: Path) -> bool:
        """True for a real folder; a symbolic link (to anything) is refused, never followed."""
        if path.is_symlink():
            raise EdgeDeployError(f"{path} is a symbolic link (to {os.readlink(path)}); edgedeploy never follows a "
                                  "link in the cache", where=str(path),
                                  fix="remove the link, or set XDG_CACHE_HOME to the real folder")
        return path.is_dir()

    def _entry_dirs(self, stage: str) -> list[Path]:
        """The folders under a stage that are entries: real folders named by a key, holding a real key.json."""
        folder = self.root / "stages" / stage
        if not all(self._real_folder(p) for p in (self.root, self.root / "stages", folder)):
            return []
        return [p for p in sorted(folder.iterdir()) if _ENTRY_NAME.fullmatch(p.name) and not p.is_symlink()
                and p.is_dir() and (p / KEY_FILE).is_file() and not (p / KEY_FILE).is_symlink()]

    def entries(self) -> list[dict[str, Any]]:
        """Every entry: stage, key, size, age, what it was made from (for `edgedeploy cache ls`); an entry whose
        key.json does not read says so in `from`."""
        out = []
        for stage in STAGES:
            for folder in self._entry_dirs(stage):
                key_file = folder / KEY_FILE
                try:
                    record = read_key_file(key_file)
                except EdgeDeployError as e:
                    out.append({"stage": stage, "key": folder.name, "dir": str(folder), "bytes": 0,
                                "age_s": time.time() - key_file.lstat().st_mtime,
                                "from": f"{key_file}: {e.what} ({e.fix})"})
                    continue
                source = record.material.get("source")
                source = source if isinstance(source, dict) else {}
                if stage == "export":
                    made_from = str(source.get("factory") or f"onnx {str(source.get('sha256', ''))[:12]}")
                else:
                    made_from = f"raw.onnx {str(record.material.get('raw_sha256', ''))[:12]}"
                out.append({"stage": stage, "key": folder.name, "dir": str(folder),
                            "bytes": sum(f.size for f in record.files.values()),
                            "age_s": time.time() - key_file.lstat().st_mtime, "from": made_from})
        return out

    def clear(self, stage: str | None = None) -> tuple[int, int]:
        """Delete every entry (or one stage's) and its seal; returns (entries, bytes) removed. Only real entry
        folders are removed; a symbolic link anywhere on the way is refused (EdgeDeployError), never followed."""
        count = size = 0
        for name in ([stage] if stage else STAGES):
            for folder in self._entry_dirs(name):
                files = [p for p in folder.rglob("*") if p.is_file() and not p.is_symlink()]
                bytes_ = sum(p.lstat().st_size for p in files)
                shutil.rmtree(folder)
                fileio.remove(self._seal_path(folder))
                count, size = count + 1, size + bytes_
        return count, size


__all__ = ["StageCache", "KeyFile", "read_key_file", "ownership_problem", "default_root", "export_material",
           "optimize_material", "factory_code", "edgedeploy_code", "STAGES", "SECRET_FILE", "SEALS"]
