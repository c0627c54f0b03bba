"""One keying scheme for every calibration result: NNCF-quantized IR, Q/DQ ONNX scales, TensorRT calibrator caches.

A result depends on its *key material*: the model's sha256, the calibration data's sha256 (exactly the samples used,
in order), the method settings and the library versions. The key is the sha256 of that material as sorted JSON.

Cache layout (default `<out>/cache`, or `calibration.cache_dir` to share it between builds):

    <root>/<kind>/<key[:16]>/...files...     the result
    <root>/<kind>/<key[:16]>/key.json        {"schema", "kind", "key", "material", "files"}; written last, so an
                                             entry without it is incomplete and never used

An equal key is reused ("reused"). A result made from other material is never used silently: when no entry has the
key, the newest entry of the same kind is named as stale with the fields that changed ("rebuilt"); an entry whose
key.json does not match its material or folder is refused and rebuilt ("refused").

The key says what a result was made from, not that its files are still what was made: `files` records the size and
sha256 of every file the result holds, and reuse checks them, so a truncated, bit-flipped, missing or added file is
refused (naming the file) and rebuilt, never loaded. A key file without `files` (schema /1, before the hashes) cannot
vouch for its files and is refused like a changed one: recalibrating costs seconds to a minute, reusing a corrupt
result costs a wrong artifact. A single-file result (TensorRT's calibrator cache) gets the same record beside it
(`<file>.json`) and the same check.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgedeploy import fileio
from edgedeploy.errors import EdgeDeployError

SCHEMA = "edgedeploy.calibration-cache/2"
KEY_FILE = "key.json"
_KEY_LEN = 16


def key_of(material: Mapping[str, Any]) -> str:
    """sha256 of the key material as sorted JSON."""
    return hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()


def _listing(artifact: Path) -> dict[str, Path]:
    """The files a result holds, by path relative to its folder (a single-file result: its own name); a folder's
    key.json describes the others, so it is not one of them."""
    if not artifact.is_dir():
        return {artifact.name: artifact}
    out = {}
    for folder, _, names in os.walk(artifact):
        for name in names:
            path = Path(folder) / name
            rel = path.relative_to(artifact).as_posix()
            if rel != KEY_FILE:
                out[rel] = path
    return out


def _content(artifact: Path) -> dict[str, dict[str, Any]]:
    """{relative path: {"size", "sha256"}} of every file `artifact` (a file or a folder) holds."""
    return {rel: {"size": p.stat().st_size, "sha256": fileio.sha256_file(p)}
            for rel, p in sorted(_listing(Path(artifact)).items())}


def key_record(material: Mapping[str, Any], artifact: Path, schema: str = SCHEMA, **extra: Any) -> dict[str, Any]:
    """The key file of `artifact` made from `material`: the key, the material and the files' sizes and hashes."""
    return {"schema": schema, **extra, "key": key_of(material), "material": dict(material),
            "files": _content(artifact)}


def changed_fields(new: Mapping[str, Any], old: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Dotted names of the fields that differ between two key materials (nested dicts are compared field by field)."""
    out = []
    for k in sorted(set(new) | set(old)):
        a, b = new.get(k), old.get(k)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            out += changed_fields(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k}")
    return out


def _content_problem(artifact: Path, recorded: Mapping[str, Any]) -> tuple[str, str] | None:
    """(file, what is wrong) for the first file of `artifact` that differs from its record, else None. Sizes are
    compared before any file is hashed, so a truncated file costs no read."""
    files = _listing(artifact)
    for rel in sorted(set(recorded) | set(files)):
        if rel not in files:
            return rel, "missing"
        if rel not in recorded:
            return rel, "not in the key file's file list (added after the result was made)"
    for rel, path in sorted(files.items()):
        want, size = recorded[rel], path.stat().st_size
        if size != want.get("size"):
            return rel, f"content hash mismatch ({size} bytes, recorded {want.get('size')})"
    for rel, path in sorted(files.items()):
        got = fileio.sha256_file(path)
        if got != recorded[rel].get("sha256"):
            return rel, f"content hash mismatch (sha256 {got[:12]}, recorded {str(recorded[rel].get('sha256'))[:12]})"
    return None


def check_key_file(artifact: Path, key_file: Path, material: Mapping[str, Any], what: str = "calibration cache") -> bool:
    """True when `artifact` (a file or a folder) exists, `key_file` says it was made from exactly `material`, and its
    files still have the recorded sizes and hashes; False when there is no artifact (calibrate). Anything else is an
    EdgeDeployError naming what changed (a field of the material, or a file)."""
    artifact, key_file = Path(artifact), Path(key_file)
    if not artifact.exists():
        return False
    refit = f"delete it (and its key file {key_file.name}) to recalibrate"
    if not key_file.is_file():
        raise EdgeDeployError(f"{what} has no key file, so what it was calibrated on is unknown",
                              where=str(artifact), fix=f"delete it to recalibrate (its key goes to {key_file.name})")
    try:
        recorded = json.loads(key_file.read_text())
    except (OSError, ValueError, RecursionError) as e:
        raise EdgeDeployError(f"unreadable calibration key file ({' '.join(str(e).split())})", where=str(key_file),
                              fix="delete the cache and its key file to recalibrate") from None
    if not isinstance(recorded, dict):
        raise EdgeDeployError("calibration key file is not a JSON object", where=str(key_file), fix=refit)
    material = json.loads(json.dumps(dict(material), default=str))
    old = recorded.get("material")
    if recorded.get("key") != key_of(material) or old != material:
        changed = changed_fields(material, old) if isinstance(old, Mapping) else []
        raise EdgeDeployError(f"stale {what}: {', '.join(changed) or 'key'} changed since it was made",
                              where=str(artifact), fix=refit)
    files = recorded.get("files")
    if not isinstance(files, dict) or not all(isinstance(v, dict) for v in files.values()):
        raise EdgeDeployError(f"{what}: its key file records no content hashes (older format, schema "
                              f"{recorded.get('schema')}), so its files cannot be checked", where=str(key_file),
                              fix=refit)
    problem = _content_problem(artifact, files)
    if problem is not None:
        rel, text = problem
        where = artifact / rel if artifact.is_dir() else artifact
        raise EdgeDeployError(f"{what}: {rel}: {text}", where=str(where), fix=refit)
    return True


@dataclass
class CacheEntry:
    """One keyed result: `status` is reused | new | rebuilt | refused; `note` says why for the report."""

    kind: str
    key: str
    dir: Path
    material: dict[str, Any]
    status: str
    note: str = ""
    stale: dict[str, Any] = field(default_factory=dict)  # {"key": ..., "changed": [...]} of a stale entry

    @property
    def reused(self) -> bool:
        return self.status == "reused"

    def staging(self) -> Path:
        """A fresh folder to write the result into; `commit` moves it in place with its key file."""
        return fileio.staging_dir(self.dir)

    def commit(self, staged: Path) -> None:
        fileio.write_json(Path(staged) / KEY_FILE, key_record(self.material, Path(staged), kind=self.kind))
        fileio.replace_dir(staged, self.dir)

    def report(self) -> dict[str, Any]:
        return {"kind": self.kind, "key": self.key, "dir": str(self.dir), "status": self.status, "note": self.note,
                **({"stale": self.stale} if self.stale else {})}


class CalibrationCache:
    """Keyed results under `root`: calibration results by default; the stage cache (edgedeploy.stagecache) keeps
    export/optimize results the same way (`what` names them in messages, `remade` says what a miss does).
    `nearest`: a miss names the changed fields against the entry with the fewest of them (a cache shared by many
    models), not against the newest entry."""

    def __init__(self, root: Path, what: str = "calibration result", remade: str = "recalibrated",
                 nearest: bool = False):
        self.root = Path(root)
        self.what, self.remade, self.nearest = what, remade, nearest

    def entry(self, kind: str, material: Mapping[str, Any]) -> CacheEntry:
        """The entry for this material: reused when its key file and files match, else to be (re)built, saying why."""
        material = json.loads(json.dumps(dict(material), default=str))
        key = key_of(material)
        folder = self.root / kind / key[:_KEY_LEN]
        if folder.is_dir():
            try:
                if check_key_file(folder, folder / KEY_FILE, material, what=f"{kind} {self.what}"):
                    return CacheEntry(kind, key, folder, material, "reused", f"key {key[:_KEY_LEN]} matches")
            except EdgeDeployError as e:
                shutil.rmtree(folder, ignore_errors=True)
                return CacheEntry(kind, key, folder, material, "refused", f"refused and rebuilt: {e.what}")
        stale = self._closest_other(kind, key, material)
        if stale is None:
            return CacheEntry(kind, key, folder, material, "new", "no earlier result")
        changed = changed_fields(material, stale[1].get("material", {}))
        return CacheEntry(kind, key, folder, material, "rebuilt",
                          f"stale result {stale[0].name} not used ({', '.join(changed)} changed); {self.remade}",
                          stale={"key": stale[1].get("key"), "changed": changed})

    def _closest_other(self, kind: str, key: str, material: Mapping[str, Any]) -> tuple[Path, dict] | None:
        """The newest other entry of `kind`, or with `nearest` the one with the fewest changed fields (then newest)."""
        best = None
        for kf in (self.root / kind).glob(f"*/{KEY_FILE}"):
            if kf.parent.name == key[:_KEY_LEN]:
                continue
            try:
                rec = json.loads(kf.read_text())
            except (OSError, ValueError, RecursionError):
                continue
            if not isinstance(rec, dict) or not isinstance(rec.get("material"), dict):
                continue
            distance = len(changed_fields(material, rec["material"])) if self.nearest else 0
            rank = (-distance, kf.stat().st_mtime)
            if best is None or rank > best[0]:
                best = (rank, kf.parent, rec)
        return None if best is None else (best[1], best[2])


__all__ = ["CalibrationCache", "CacheEntry", "key_of", "key_record", "changed_fields", "check_key_file"]
