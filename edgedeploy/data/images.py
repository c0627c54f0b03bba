"""A plain image file, or a folder of them, as data (no labels): calibration images. Files in sorted name order;
a record's key is the file name."""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import numpy as np

from edgedeploy import fileio
from edgedeploy.data.base import Record
from edgedeploy.errors import UsageError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
IMAGE_MAX_PIXELS = 50_000_000  # an 8K frame is 33 Mpx; a calibration image is resized to the model's input anyway


class ImageFilesSource:
    """One image file, or the image files of a folder (not its subfolders), read when a record is asked for."""

    kind = "images"

    def __init__(self, path: Path, what: str = "calibration image"):
        path = Path(path)
        self.what = what
        self.files = [path] if path.is_file() else sorted(p for p in path.iterdir()
                                                          if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)

    def __len__(self) -> int:
        return len(self.files)

    def record(self, index: int) -> Record:
        f = self.files[index]
        return Record(f.name, read_image(f, self.what), None, None)

    def class_names(self) -> list[str] | None:
        return None

    def fingerprint(self) -> str:
        h = hashlib.sha256(b"edgedeploy.data.images/1")
        for f in self.files:
            h.update(f"|{f.name}|{fileio.sha256_file(f)}".encode())
        return h.hexdigest()


def read_image(path: Path, what: str = "calibration image") -> np.ndarray:
    """An image file as uint8 HWC RGB; a corrupt or unreadable file, or one of more than IMAGE_MAX_PIXELS pixels
    (checked from its header, before it is decoded: a decompression bomb), is a UsageError naming it."""
    from PIL import Image

    fix = "replace or delete the file"
    too_large = f"more than the {IMAGE_MAX_PIXELS / 1e6:.0f} megapixels a {what} may have"
    with fileio.open_input(path, what, fix=fix) as f, warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # refused below, with the budget named
        try:
            with Image.open(f) as im:
                pixels = im.width * im.height
                if pixels > IMAGE_MAX_PIXELS:
                    raise UsageError(f"{what} is {im.width}x{im.height} ({pixels / 1e6:.0f} megapixels), "
                                     f"{too_large}", where=str(path),
                                     fix="downscale it to about the model's input size")
                im.load()
                return np.asarray(im.convert("RGB"), dtype=np.uint8)
        except (UsageError, MemoryError):
            raise
        except Image.DecompressionBombError:
            raise UsageError(f"{what} is {too_large} (its header says so; a decompression bomb?)",
                             where=str(path), fix="downscale it to about the model's input size") from None
        except Exception as e:  # Pillow's decoders raise what they raise on a damaged file; all are the file's
            text = str(e).splitlines()
            raise UsageError(f"unreadable or corrupt {what} ({type(e).__name__}"
                             f"{': ' + text[0] if text else ''})", where=str(path), fix=fix) from None


__all__ = ["IMAGE_MAX_PIXELS", "IMAGE_SUFFIXES", "ImageFilesSource", "read_image"]
