"""What a task declares (edgedeploy.tasks.TASKS): how its metrics are computed from the reference's and the
artifact's outputs, which of them the config can budget, which a baseline compares, which rank `--precision auto`
candidates and headline reports and fleet tables, what is missing without labels, and its report section. evaluate,
gate, report, notices, auto and fleet merge read these instead of naming tasks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, create_model


@dataclass(frozen=True)
class Budget:
    """A threshold key of the config (`thresholds.<precision>.<key>`) and the task metric it limits."""

    key: str
    metric: str
    op: str  # `<=` or `>=`


@dataclass(frozen=True)
class TaskSection:
    """A task's section of report.md / report.html: a title and blocks, each a paragraph or a table (header, rows)."""

    title: str
    blocks: list[str | tuple[list[str], list[list[str]]]]


class TaskRecord(BaseModel):
    """report.json's `task` as its task's renderers read it: each task declares a subclass naming its `kind` and
    typing its figures; figures another version adds are kept as they are."""

    model_config = ConfigDict(extra="allow")

    kind: str


# (settings, output name, reference outputs, artifact outputs, detection targets, class labels, *, class_names,
# input_size) -> the task record; class_names are the data's (or None), input_size the model input's (H, W) or None
Evaluate = Callable[..., dict[str, Any]]


@dataclass
class TaskResults:
    """One model's task results per image (detections, top-k classes), in image order: what a streamed validation
    keeps of every image instead of its output tensors. `info` says how they were made (decoder, output, the
    settings that shape them), so results stored with a reference are used only under the same settings."""

    info: dict[str, Any]
    items: list[Any]

    def extend(self, more: TaskResults) -> None:
        if more.info != self.info:
            raise ValueError(f"results made two ways: {self.info} and {more.info}")
        self.items.extend(more.items)


# (settings, one batch's outputs, *, class_names, input_size) -> that batch's TaskResults
Decode = Callable[..., TaskResults]
# (settings, reference TaskResults, artifact TaskResults, detection targets, class labels, *, class_names) -> record
Score = Callable[..., dict[str, Any]]


@dataclass(frozen=True)
class Task:
    """One `validation.task`. The record `evaluate` returns is report.json's `task`, with `kind` = `name`.

    - `budgets`: the config keys that limit its metrics (also listed in edgedeploy.config.TASK_KEYS, which the
      config validates against `validation.task`);
    - `baseline_metrics`: compared with a baseline report (higher is better; a drop beyond
      regression.max_task_drop fails);
    - `ranking_metrics`: `--precision auto` ranks candidates by the first one present;
    - `summary_metrics`: reports and fleet tables show the first one present, with its drop (`drops`) when known;
    - `labelled_metric`: present only when the validation data has labels; `no_labels` the warning when it is not;
    - `decode` / `score`: the two halves of `evaluate` for a streamed set (per batch, then over every image);
      `pack` / `unpack`: TaskResults as flat numeric arrays (stored with the reference) and back;
    - `labels`: how people read each metric name (`short_labels` in a table cell); `section`: the report section
      of a record (its `record` model, by default one that types only `kind`) and the artifact's name (`target
      precision`).
    """

    name: str
    evaluate: Evaluate
    section: Callable[[Any, str], TaskSection]
    decode: Decode
    score: Score
    pack: Callable[[TaskResults], dict[str, Any]]
    unpack: Callable[[dict[str, Any], dict[str, Any]], TaskResults]
    record: type[TaskRecord] | None = None
    budgets: tuple[Budget, ...] = ()
    baseline_metrics: tuple[str, ...] = ()
    ranking_metrics: tuple[str, ...] = ()
    summary_metrics: tuple[str, ...] = ()
    drops: dict[str, str] = field(default_factory=dict)
    labelled_metric: str = ""
    no_labels: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    short_labels: dict[str, str] = field(default_factory=dict)  # summary metrics' names in narrow table cells

    def __post_init__(self) -> None:
        if self.record is None:  # a record that knows its kind and keeps every figure as it is
            object.__setattr__(self, "record", create_model(f"{self.name.title()}Record", __base__=TaskRecord,
                                                            kind=(Literal[self.name], ...)))

    def summary(self, record: dict[str, Any] | TaskRecord) -> tuple[str, float, float | None] | None:
        """(metric, value, drop or None) of the first summary metric the record has."""
        values = record.model_dump(exclude_none=True) if isinstance(record, TaskRecord) else record
        for metric in self.summary_metrics:
            if metric in values:
                return metric, values[metric], values.get(self.drops.get(metric, ""))
        return None


__all__ = ["Budget", "Task", "TaskRecord", "TaskResults", "TaskSection"]
