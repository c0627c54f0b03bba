"""Which records a run uses, and reading them in batches on a background thread ahead of inference."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

import numpy as np

from edgedeploy.data.base import DataSource, Record
from edgedeploy.errors import UsageError

T = TypeVar("T")


def select(count: int, limit: int | None = None, subset: int | None = None, seed: int = 0) -> list[int]:
    """Indices of the records used, ascending: the first `limit` (the data's own order), then, when `subset` is
    smaller than what is left, a seeded random choice of `subset` of them (same seed, same choice)."""
    for name, value in (("limit", limit), ("subset", subset)):
        if value is not None and value < 1:
            raise UsageError(f"{name} is {value}; it counts records and must be at least 1")
    indices = np.arange(count if limit is None else min(count, limit))
    if subset is not None and subset < len(indices):
        indices = np.sort(np.random.default_rng(seed).choice(indices, subset, replace=False))
    return [int(i) for i in indices]


def iter_batches(source: DataSource, indices: Sequence[int], batch: int, prefetch: int = 2,
                 prepare: Callable[[Record], T] | None = None) -> Iterator[list[T]]:
    """Records `indices` of `source` in order, `batch` at a time. A background thread reads (and `prepare`s, e.g.
    letterboxes) up to `prefetch` batches ahead, so decoding overlaps inference; at most prefetch + 2 batches are
    in memory. An error in the thread is raised here, at the batch it happened in."""
    if batch < 1:
        raise UsageError(f"batch is {batch}; it must be at least 1")
    prepare = prepare or (lambda r: r)  # type: ignore[assignment, return-value]
    chunks = [indices[i:i + batch] for i in range(0, len(indices), batch)]
    slots: queue.Queue = queue.Queue(maxsize=max(1, prefetch))
    stop = threading.Event()

    def work() -> None:
        try:
            for chunk in chunks:
                items = [prepare(source.record(i)) for i in chunk]
                while not stop.is_set():
                    try:
                        slots.put(("batch", items), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
        except BaseException as e:  # handed to the consumer, which raises it
            slots.put(("error", e))
            return
        slots.put(("done", None))

    thread = threading.Thread(target=work, name="edgedeploy-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = slots.get()
            if kind == "done":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        while thread.is_alive():  # free a worker blocked on a full queue
            try:
                slots.get_nowait()
            except queue.Empty:
                pass
            thread.join(timeout=0.05)
