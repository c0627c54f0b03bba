"""Running `edgedeploy` in a subprocess where PyTorch cannot be imported, and reporting every attempt.

`sys.modules["torch"] = None` makes any `import torch` raise ImportError and makes `importlib.util.find_spec("torch")`
answer None, exactly as when torch is not installed, even in an environment that has it. A wrapper around
`builtins.__import__` records who tried (libraries probe for torch inside try/except; edgedeploy's own code must not
even try), and at exit the process writes that record and every torch module it holds to a JSON file.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

RUNNER = r'''
import atexit, builtins, json, os, sys

attempts = {}
_import = builtins.__import__


def recording_import(name, globals=None, locals=None, fromlist=(), level=0):
    if level == 0 and (name == "torch" or name.startswith("torch.")):
        by = (globals or {}).get("__file__") or "?"
        attempts[f"{name} by {by}"] = {"name": name, "by": by}
    return _import(name, globals, locals, fromlist, level)


builtins.__import__ = recording_import
sys.modules["torch"] = None


def record():
    loaded = sorted(m for m, mod in sys.modules.items() if (m == "torch" or m.startswith("torch.")) and mod is not None)
    package = os.path.dirname(sys.modules["edgedeploy"].__file__)
    with open(os.environ["EDGEDEPLOY_TORCH_RECORD"], "w") as f:
        json.dump({"loaded": loaded, "attempts": list(attempts.values()), "package": package}, f)


atexit.register(record)
from edgedeploy.cli import main

sys.argv = ["edgedeploy", *sys.argv[1:]]
main()
'''


def run_without_torch(python: str | Path, *args: str, cwd: Path, timeout: float = 600
                      ) -> tuple[subprocess.CompletedProcess, dict]:
    """`edgedeploy ARGS` run by `python` with torch blocked; returns the result and the torch record."""
    record = cwd / f".torch-record-{os.getpid()}-{len(list(cwd.glob('.torch-record-*')))}.json"
    env = {**os.environ, "COLUMNS": "1000", "EDGEDEPLOY_TORCH_RECORD": str(record)}
    env.pop("PYTHONPATH", None)
    result = subprocess.run([str(python), "-c", RUNNER, *args], cwd=cwd, capture_output=True, text=True,
                            timeout=timeout, env=env)
    return result, json.loads(record.read_text())


def assert_no_torch(record: dict) -> None:
    """No torch module was loaded, and no edgedeploy file so much as tried to import one."""
    assert record["loaded"] == [], record["loaded"]
    ours = [a for a in record["attempts"] if a["by"].startswith(record["package"] + os.sep)]
    assert not ours, ours
