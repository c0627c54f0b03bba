"""A package model's weights from model.checkpoint: a state_dict (safetensors, or a torch file read without running
code unless --trust-code), matched strictly to the architecture the package built."""

from __future__ import annotations

from pathlib import Path

from edgedeploy.errors import EdgeDeployError
from edgedeploy.export import load_checkpoint


def load_state_dict(module, path: Path, trust_code: bool) -> None:
    state = load_checkpoint(Path(path), trust_code)
    if isinstance(state, dict):
        state = state.get("state_dict", state.get("model", state))
    if not isinstance(state, dict):
        raise EdgeDeployError(f"checkpoint holds a {type(state).__name__}, not a state_dict", where=str(path))
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = " ".join(str(e).splitlines()[0:2])
        raise EdgeDeployError(f"checkpoint does not match the model: {first}", where=str(path),
                              fix="check the model name and model.kwargs against the checkpoint") from None
