"""Image files of a dataset: listing them in a stable order, decoding one, and hashing a set of them."""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from edgedeploy import fileio
from edgedeploy.errors import UsageError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
IMAGE_MAX_PIXELS = 50_000_000  # an 8K frame is 33 Mpx; a larger header is a decompression bomb or the wrong file


def list_images(folder: Path) -> list[Path]:
    """Image files under `folder` (recursively), sorted by their path relative to it."""
    return sorted((p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES),
                  key=lambda p: p.relative_to(folder).as_posix())


def image_size(path: Path) -> tuple[int, int]:
    """(height, width) from the file's header, without decoding it."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.height, im.width
    except FileNotFoundError:
        raise UsageError("image not found", where=str(path), fix="check the dataset's image folder") from None
    except Exception as e:
        raise UsageError(f"unreadable image ({type(e).__name__})", where=str(path),
                         fix="replace or delete the file") from None


def read_image(path: Path) -> np.ndarray:
    """An image file as uint8 HWC RGB. Missing, corrupt, or larger than IMAGE_MAX_PIXELS (checked from the header
    before decoding): one UsageError naming the file."""
    from PIL import Image

    fix = "replace or delete the file, or fix the annotation that names it"
    too_large = f"more than the {IMAGE_MAX_PIXELS / 1e6:.0f} megapixels an image may have"
    if not path.is_file():
        raise UsageError("image not found", where=str(path), fix=fix)
    with fileio.open_input(path, "image", fix=fix) as f, warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(f) as im:
                if im.width * im.height > IMAGE_MAX_PIXELS:
                    raise UsageError(f"image is {im.width}x{im.height}, {too_large}", where=str(path), fix=fix)
                im.load()
                return np.asarray(im.convert("RGB"), dtype=np.uint8)
        except (UsageError, MemoryError):
            raise
        except Image.DecompressionBombError:
            raise UsageError(f"image is {too_large}", where=str(path), fix=fix) from None
        except Exception as e:  # Pillow raises what its decoders raise on a damaged file
            text = str(e).splitlines()
            raise UsageError(f"unreadable or corrupt image ({type(e).__name__}{': ' + text[0] if text else ''})",
                             where=str(path), fix=fix) from None


def hash_files(schema: str, root: Path, files: Iterable[Path], extra: bytes = b"") -> str:
    """sha256 over `extra` (annotations) and each file's path relative to `root` and bytes, in the given order."""
    h = hashlib.sha256(schema.encode())
    h.update(hashlib.sha256(extra).digest())
    for f in files:
        h.update(f"|{f.relative_to(root).as_posix()}|".encode())
        h.update(bytes.fromhex(fileio.sha256_file(f)))
    return h.hexdigest()
