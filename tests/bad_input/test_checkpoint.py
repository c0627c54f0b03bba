"""The bad-input matrix: checkpoint."""

from __future__ import annotations

import pickle

import pytest

from bad_input.matrix import Planted, Run, build, checkpoint_config, matrix_test, registry

pytestmark = pytest.mark.slow  # each case runs the CLI on real builds

CASES: list = []
case = registry(CASES)


@case("checkpoint missing", 2, "model.checkpoint not found", "check model.checkpoint")
def _(bench, here, out):
    return Run(build(checkpoint_config(bench, here, here / "none.pt"), out), (str(here / "none.pt"),))


@case("checkpoint corrupt", 1, "cannot read checkpoint", "corrupt, truncated", existing=True)
def _(bench, here, out):
    (here / "bad.pt").write_bytes(b"not a checkpoint")
    return Run(build(checkpoint_config(bench, here, here / "bad.pt"), out), (str(here / "bad.pt"),))


@case("pickled checkpoint without --trust-code", 2, "holds pickled Python objects", "refused", "--trust-code")
def _(bench, here, out):
    (here / "evil.pt").write_bytes(pickle.dumps({"model": Planted(here / "pwned")}, protocol=2))

    def never_executed(result):
        assert not (here / "pwned").exists()

    return Run(build(checkpoint_config(bench, here, here / "evil.pt"), out), (str(here / "evil.pt"),),
               after=never_executed)


@case("safetensors checkpoint corrupt", 1, "cannot read checkpoint (SafetensorError", "save it again")
def _(bench, here, out):
    (here / "bad.safetensors").write_bytes(b"\x10\0\0\0\0\0\0\0" + b'{"a":1}' + b"garbage")
    return Run(build(checkpoint_config(bench, here, here / "bad.safetensors"), out), (str(here / "bad.safetensors"),))


test_bad_input_gives_one_clear_line_and_keeps_the_output = matrix_test(CASES)
