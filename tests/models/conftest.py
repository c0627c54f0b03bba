"""The package-source tests need timm, torchvision, Ultralytics and transformers (the `[timm]`, `[torchvision]`,
`[ultralytics]`, `[transformers]` extras, with a torchvision built for the installed torch). Where they are not
installed the whole folder is skipped with that reason: the CI job that installs them runs it (docs/models.md)."""

from __future__ import annotations

import importlib
import os

import pytest

MISSING = []
for _name in ("torchvision", "timm", "ultralytics", "transformers"):
    try:
        importlib.import_module(_name)
    except Exception as e:  # noqa: BLE001 - a torchvision built for another torch fails with RuntimeError
        MISSING.append(f"{_name} ({type(e).__name__})")

os.environ.setdefault("YOLO_OFFLINE", "1")  # Ultralytics: never reach the network from a test


def pytest_collection_modifyitems(config, items):
    if not MISSING:
        return
    reason = (f"needs the model packages, missing here: {', '.join(MISSING)}; install "
              "edgedeploy[timm,torchvision,ultralytics,transformers] with a matching torchvision (docs/models.md)")
    for item in items:
        if "tests/models/" in str(item.fspath):
            item.add_marker(pytest.mark.skip(reason=reason))
