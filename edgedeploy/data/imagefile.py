"""Image files of a dataset: listing them in a stable order, decoding one (edgedeploy.data.images.read_image), and
hashing a set of them."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from edgedeploy import fileio
from edgedeploy.data import images

IMAGE_SUFFIXES = images.IMAGE_SUFFIXES


def list_images(folder: Path) -> list[Path]:
    """Image files under `folder` (recursively), sorted by their path relative to it."""
    return sorted((p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES),
                  key=lambda p: p.relative_to(folder).as_posix())


def read_image(path: Path) -> np.ndarray:
    """A dataset image as uint8 HWC RGB; missing, corrupt or too large: one UsageError naming the file."""
    return images.read_image(path, "image")


def hash_files(schema: str, root: Path, files: Iterable[Path], extra: bytes = b"") -> str:
    """sha256 over `extra` (annotations) and each file's path relative to `root` and bytes, in the given order."""
    h = hashlib.sha256(schema.encode())
    h.update(hashlib.sha256(extra).digest())
    for f in files:
        h.update(f"|{f.relative_to(root).as_posix()}|".encode())
        h.update(bytes.fromhex(fileio.sha256_file(f)))
    return h.hexdigest()
