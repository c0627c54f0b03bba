"""The task registry (edgedeploy.tasks.TASKS) and what the config knows of tasks agree: every task the config
accepts is registered, and every budget key a task declares is a threshold of the config, tied to that task."""

from __future__ import annotations

from typing import get_args

from edgedeploy.config import TASK_KEYS, Thresholds, ValidationSettings
from edgedeploy.tasks import TASKS, task_of


def test_every_task_of_the_config_is_registered():
    names = set(get_args(ValidationSettings.model_fields["task"].annotation)) - {"none"}
    assert names == set(TASKS)


def test_budget_keys_are_the_configs_task_thresholds():
    declared = {b.key: t.name for t in TASKS.values() for b in t.budgets}
    assert declared == TASK_KEYS
    assert set(declared) <= set(Thresholds.model_fields)


def test_a_record_names_its_task():
    assert task_of({"kind": "detection"}) is TASKS["detection"]
    assert task_of({"kind": "segmentation"}) is None and task_of(None) is None


def test_summary_prefers_the_labelled_metric_and_its_drop():
    det = TASKS["detection"]
    assert det.summary({"map50": 0.9, "map50_drop": 0.01, "map50_vs_reference": 0.95}) == ("map50", 0.9, 0.01)
    assert det.summary({"map50_vs_reference": 0.95}) == ("map50_vs_reference", 0.95, None)
