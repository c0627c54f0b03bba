"""Reading .npy/.npz files without trusting them: validation and calibration data, reference.npz, TensorRT's
calibration arrays.

Such a file may come from anywhere (a colleague, a download, a bit-flipped disk), so it is read in this order and
every problem is one UsageError naming the file and the array:
1. it must be a regular, non-empty file that starts like an .npy / a zip archive (a FIFO, /dev/null, a folder, a
   pickle are refused before anything is parsed);
2. every array's header is read and checked before any data: a numeric dtype (bool, integers, floats; object arrays
   are never read, since loading them runs code from the file), at least one dimension (arrays hold samples along
   their first axis), and, over all arrays of the file, a byte budget of half this machine's memory, so a header
   promising terabytes is refused instead of ending in an allocation failure;
3. the data is read with `allow_pickle=False`; a truncated or corrupt member is named.
What the arrays must be for the model (dtype, rank, sizes against the config's inputs) is the caller's check.
"""

from __future__ import annotations

import math
import os
import zipfile
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
from numpy.lib import format as npy_format

from edgedeploy import fileio
from edgedeploy.errors import UsageError

_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")
_KINDS = "biuf"  # bool, signed and unsigned integers, floats


def _half_memory() -> int:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2
    except (ValueError, OSError):
        return 8 << 30


MAX_BYTES = _half_memory()  # the arrays of one file, uncompressed


@dataclass(frozen=True)
class Header:
    shape: tuple[int, ...]
    dtype: np.dtype

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


class NpzArrays:
    """An opened .npz whose array headers have all been checked; `arrays[name]` reads one array."""

    def __init__(self, path: Path, what: str, fix: str):
        self.path, self.what, self.fix = Path(path), what, fix
        self._stack = ExitStack()
        try:
            f = self._stack.enter_context(fileio.open_input(path, what, fix=fix))
            _check_magic(f, self.path, what, _ZIP_MAGICS, ".npz (a zip archive of .npy arrays)", fix)
            try:
                self._zip = self._stack.enter_context(zipfile.ZipFile(f))
                members = self._zip.infolist()
            except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as e:
                raise self._error(f"is not a readable .npz file ({_reason(e)})") from None
            self._members: dict[str, zipfile.ZipInfo] = {}
            self.headers: dict[str, Header] = {}
            for info in members:
                if not info.filename.endswith(".npy"):
                    raise self._error(f"holds {info.filename!r}, which is not a NumPy array (.npy)")
                name = info.filename[:-4]
                self._members[name] = info
                self.headers[name] = self._header(name, info)
            _check_budget(self.headers.values(), self.path, what)
        except BaseException:
            self._stack.close()
            raise

    @property
    def files(self) -> list[str]:
        return list(self.headers)

    def __contains__(self, name: object) -> bool:
        return name in self.headers

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self.headers:
            raise KeyError(name)
        try:
            with self._zip.open(self._members[name]) as m:
                array = npy_format.read_array(m, allow_pickle=False)
        except MemoryError:
            raise
        except Exception as e:  # a corrupt member fails in zlib, zipfile or numpy, each its own way
            raise self._error(f"array {name!r} is corrupt or truncated ({_reason(e)})") from None
        return array

    def _header(self, name: str, info: zipfile.ZipInfo) -> Header:
        try:
            with self._zip.open(info) as m:
                header = _read_header(m)
        except UsageError as e:
            raise self._error(f"array {name!r} {e.what}") from None
        except MemoryError:
            raise
        except Exception as e:
            raise self._error(f"array {name!r} has an unreadable header ({_reason(e)})") from None
        problem = _dtype_problem(header)
        if problem:
            raise self._error(f"array {name!r} {problem}")
        if info.file_size < header.nbytes:
            raise self._error(f"array {name!r} is truncated: its header promises {header.nbytes} bytes of "
                              f"{header.dtype} {list(header.shape)}, the member holds {info.file_size}")
        return header

    def _error(self, problem: str) -> UsageError:
        return UsageError(f"the {self.what} {problem}", where=str(self.path), fix=self.fix)

    def close(self) -> None:
        self._stack.close()

    def __enter__(self) -> NpzArrays:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_npz(path: str | os.PathLike, what: str, *, fix: str = "check the file, or write it again with np.savez"
             ) -> NpzArrays:
    """`with open_npz(path, "validation data") as data:` `data.files`, `name in data`, `data[name]`."""
    return NpzArrays(Path(path), what, fix)


def read_npy(path: str | os.PathLike, what: str, *, fix: str = "check the file, or write it again with np.save"
             ) -> np.ndarray:
    """The array in an .npy file, checked as `open_npz` checks each array of an .npz."""
    path = Path(path)

    def error(problem: str) -> UsageError:
        return UsageError(f"the {what} {problem}", where=str(path), fix=fix)

    with fileio.open_input(path, what, fix=fix) as f:
        _check_magic(f, path, what, (_NPY_MAGIC,), ".npy array", fix)
        try:
            header = _read_header(f)
        except UsageError as e:
            raise error(e.what) from None
        except MemoryError:
            raise
        except Exception as e:  # numpy parses the header with Python's tokenizer and ast: each fails its own way
            raise error(f"has an unreadable header ({_reason(e)})") from None
        problem = _dtype_problem(header)
        if problem:
            raise error(problem)
        _check_budget([header], path, what)
        f.seek(0)
        try:
            return npy_format.read_array(f, allow_pickle=False)
        except MemoryError:
            raise
        except Exception as e:
            raise error(f"is corrupt or truncated ({_reason(e)})") from None


def _check_magic(f: IO[bytes], path: Path, what: str, magics: tuple[bytes, ...], kind: str, fix: str) -> None:
    start = f.read(8)
    f.seek(0)
    if not start:
        raise UsageError(f"the {what} is empty (0 bytes)", where=str(path), fix=fix)
    if not any(start.startswith(m) for m in magics):
        raise UsageError(f"the {what} is not an {kind}: it does not start like one", where=str(path), fix=fix)


def _read_header(f: IO[bytes]) -> Header:
    version = npy_format.read_magic(f)
    read = npy_format.read_array_header_1_0 if version == (1, 0) else npy_format.read_array_header_2_0
    shape, _, dtype = read(f)
    if not all(isinstance(d, int) and d >= 0 for d in shape):
        raise UsageError(f"has an invalid shape {shape}")
    return Header(tuple(shape), np.dtype(dtype))


def _dtype_problem(header: Header) -> str | None:
    dtype = header.dtype
    if dtype.hasobject:
        return ("holds Python objects (dtype object); they are never read, since loading them would run code "
                "from the file: save numeric arrays")
    if dtype.kind not in _KINDS or dtype.fields is not None or dtype.subdtype is not None:
        return f"has dtype {dtype}; only bool, integer and floating-point arrays are read"
    if not header.shape:
        return "is a 0-d scalar; these arrays hold samples along their first axis"
    return None


def _check_budget(headers, path: Path, what: str) -> None:
    total = sum(h.nbytes for h in headers)
    if total > MAX_BYTES:
        raise UsageError(f"the {what} holds {total / 2**30:.1f} GiB of arrays, more than half this machine's memory "
                         f"({MAX_BYTES / 2**30:.1f} GiB); refused before reading", where=str(path),
                         fix="use fewer samples, or split the data")


def _reason(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


__all__ = ["open_npz", "read_npy", "write_npz", "NpzArrays", "Header", "MAX_BYTES"]


def write_npz(file: str | os.PathLike | IO[bytes], arrays: dict[str, np.ndarray], *, compressed: bool = False,
              allow_pickle: bool = False) -> None:
    """An .npz of `arrays` under their own names, whatever they are: `np.savez(file, **arrays)` fails on an array
    named `file` or `allow_pickle` (a model input may be called `file`)."""
    mode = zipfile.ZIP_DEFLATED if compressed else zipfile.ZIP_STORED
    with zipfile.ZipFile(file, "w", compression=mode, allowZip64=True) as archive:
        for name, array in arrays.items():
            with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                npy_format.write_array(member, np.asanyarray(array), allow_pickle=allow_pickle)
