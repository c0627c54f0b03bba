"""Tasks by name: `TASKS` maps each `validation.task` (but `none`) to its Task (edgedeploy.tasks.base), declared as
`TASK` in tasks/<name>.py. Adding a task is one module and one line here (docs/architecture.md)."""

from __future__ import annotations

from typing import Any

from edgedeploy.tasks import classification, detection
from edgedeploy.tasks.base import Budget, Task, TaskRecord, TaskSection

TASKS: dict[str, Task] = {t.name: t for t in (
    detection.TASK,
    classification.TASK,
)}


def task_of(record: dict[str, Any] | TaskRecord | None) -> Task | None:
    """The task a report's `task` record belongs to (None for none, or a kind this version does not know)."""
    kind = record.kind if isinstance(record, TaskRecord) else (record or {}).get("kind", "")
    return TASKS.get(kind)


__all__ = ["Budget", "Task", "TaskRecord", "TaskSection", "TASKS", "task_of"]
