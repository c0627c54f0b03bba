"""Samples made by the user's Python function (`package.module:function`, calibration.function): an iterable of
arrays (a single-input model) or of dicts keyed by input name, each one sample or a batch; a record's key is
`function[item]` (`function[item][row]` for a batch)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import numpy as np

from edgedeploy.config import InputSpec, import_callable
from edgedeploy.data.arrays import single_input
from edgedeploy.data.base import Record
from edgedeploy.errors import UsageError


class CallableSource:
    """Every sample the function yields (it runs once, when the source is opened), split into single samples."""

    kind = "callable"

    def __init__(self, function: str, inputs: list[InputSpec], key: str = "calibration.function"):
        func = import_callable(function, key)
        where = f"{key} {function}"
        try:
            items = func()
        except Exception as e:
            raise UsageError(f"the {key.split('.')[0]} function raised {type(e).__name__}: {e}", where=where) from None
        if not isinstance(items, Iterable):
            raise UsageError(f"the {key.split('.')[0]} function returned a {type(items).__name__}, not an iterable",
                             where=where, fix="return a list/generator of arrays or of dicts keyed by input name")
        self.rows: list[tuple[str, dict[str, np.ndarray]]] = []
        for k, item in enumerate(items):
            item_where = f"{function}[{k}]"
            if isinstance(item, dict):
                missing = [i.name for i in inputs if i.name not in item]
                if missing:
                    raise UsageError(f"sample has no tensors for inputs {missing} (has {sorted(item)})",
                                     where=item_where)
                arrays = {i.name: np.asarray(item[i.name]) for i in inputs}
            else:
                spec_in = single_input(inputs, f"plain arrays from the {key.split('.')[0]} function", where)
                arrays = {spec_in.name: np.asarray(item)}
            for i in inputs:
                if arrays[i.name].ndim == len(i.shape) - 1:
                    arrays[i.name] = arrays[i.name][None]
            n = len(next(iter(arrays.values())))
            self.rows += [(item_where + (f"[{r}]" if n > 1 else ""), {name: a[r] for name, a in arrays.items()})
                          for r in range(n)]

    def __len__(self) -> int:
        return len(self.rows)

    def record(self, index: int) -> Record:
        key, inputs = self.rows[index]
        return Record(key, None, inputs, None)

    def class_names(self) -> list[str] | None:
        return None

    def fingerprint(self) -> str:
        h = hashlib.sha256(b"edgedeploy.data.callable/1")
        for key, arrays in self.rows:
            for name in sorted(arrays):
                a = np.ascontiguousarray(arrays[name])
                h.update(f"|{key}|{name}|{a.dtype.str}|{a.shape}|".encode())
                h.update(a.tobytes())
        return h.hexdigest()


__all__ = ["CallableSource"]
