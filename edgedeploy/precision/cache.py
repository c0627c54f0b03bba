"""One keying scheme for every calibration result: NNCF-quantized IR, Q/DQ ONNX scales, TensorRT calibrator caches.

A result depends on its *key material*: the model's sha256, the calibration data's sha256 (exactly the samples used,
in order), the method settings and the library versions. The key is the sha256 of that material as sorted JSON.

Cache layout (default `<out>/cache`, or `calibration.cache_dir` to share it between builds):

    <root>/<kind>/<key[:16]>/...files...     the result
    <root>/<kind>/<key[:16]>/key.json        {"schema", "kind", "key", "material"}; written last, so an entry
                                             without it is incomplete and never used

An equal key is reused ("reused"). A result made from other material is never used silently: when no entry has the
key, the newest entry of the same kind is named as stale with the fields that changed ("rebuilt"); an entry whose
key.json does not match its material or folder is refused and rebuilt ("refused").
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgedeploy import fileio
from edgedeploy.errors import EdgeDeployError

SCHEMA = "edgedeploy.calibration-cache/1"
KEY_FILE = "key.json"
_KEY_LEN = 16


def key_of(material: Mapping[str, Any]) -> str:
    """sha256 of the key material as sorted JSON."""
    return hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()


def key_record(material: Mapping[str, Any], schema: str = SCHEMA, **extra: Any) -> dict[str, Any]:
    return {"schema": schema, **extra, "key": key_of(material), "material": dict(material)}


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


def check_key_file(artifact: Path, key_file: Path, material: Mapping[str, Any], what: str = "calibration cache") -> bool:
    """True when `artifact` exists and `key_file` says it was made from exactly `material`; False when there is no
    artifact (calibrate). A missing, unreadable or different key is an EdgeDeployError naming what changed."""
    artifact, key_file = Path(artifact), Path(key_file)
    if not artifact.exists():
        return False
    if not key_file.is_file():
        raise EdgeDeployError(f"{what} has no key file, so what it was calibrated on is unknown",
                              where=str(artifact), fix=f"delete it to recalibrate (its key goes to {key_file.name})")
    try:
        recorded = json.loads(key_file.read_text())
    except (OSError, ValueError) as e:
        raise EdgeDeployError(f"unreadable calibration key file ({e})", where=str(key_file),
                              fix="delete the cache and its key file to recalibrate") from None
    if recorded.get("key") == key_of(material) and recorded.get("material") == json.loads(
            json.dumps(dict(material), default=str)):
        return True
    changed = changed_fields(material, recorded.get("material", {}))
    raise EdgeDeployError(f"stale {what}: {', '.join(changed) or 'key'} changed since it was made",
                          where=str(artifact), fix="delete it (and its key file) to recalibrate")


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
        fileio.write_json(Path(staged) / KEY_FILE, key_record(self.material, kind=self.kind))
        fileio.replace_dir(staged, self.dir)

    def report(self) -> dict[str, Any]:
        return {"kind": self.kind, "key": self.key, "dir": str(self.dir), "status": self.status, "note": self.note,
                **({"stale": self.stale} if self.stale else {})}


class CalibrationCache:
    def __init__(self, root: Path):
        self.root = Path(root)

    def entry(self, kind: str, material: Mapping[str, Any]) -> CacheEntry:
        """The entry for this material: reused when its key file matches, else to be (re)built, saying why."""
        material = json.loads(json.dumps(dict(material), default=str))
        key = key_of(material)
        folder = self.root / kind / key[:_KEY_LEN]
        if folder.is_dir():
            try:
                if check_key_file(folder, folder / KEY_FILE, material, what=f"{kind} calibration result"):
                    return CacheEntry(kind, key, folder, material, "reused", f"key {key[:_KEY_LEN]} matches")
            except EdgeDeployError as e:
                shutil.rmtree(folder, ignore_errors=True)
                return CacheEntry(kind, key, folder, material, "refused", f"refused and rebuilt: {e.what}")
        stale = self._newest_other(kind, key)
        if stale is None:
            return CacheEntry(kind, key, folder, material, "new", "no earlier result")
        changed = changed_fields(material, stale[1].get("material", {}))
        return CacheEntry(kind, key, folder, material, "rebuilt",
                          f"stale result {stale[0].name} not used ({', '.join(changed)} changed); recalibrated",
                          stale={"key": stale[1].get("key"), "changed": changed})

    def _newest_other(self, kind: str, key: str) -> tuple[Path, dict] | None:
        best = None
        for kf in (self.root / kind).glob(f"*/{KEY_FILE}"):
            if kf.parent.name == key[:_KEY_LEN]:
                continue
            try:
                rec = json.loads(kf.read_text())
            except (OSError, ValueError):
                continue
            mtime = kf.stat().st_mtime
            if best is None or mtime > best[0]:
                best = (mtime, kf.parent, rec)
        return None if best is None else (best[1], best[2])


__all__ = ["CalibrationCache", "CacheEntry", "key_of", "key_record", "changed_fields", "check_key_file"]
