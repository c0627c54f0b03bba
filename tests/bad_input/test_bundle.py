"""The bad-input matrix: bundles. A bundle is data: spec.json is read through the bundle schema, so a bundle rehashed
after an edit can name no code to run and no path outside itself; a signed bundle is checked against the device's
allowed_signers before anything in it is read."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from bad_input.matrix import Run, matrix_test, registry
from cli_helpers import run_cli
from edgedeploy import fileio

pytestmark = pytest.mark.slow  # each case runs the CLI on real builds

CASES: list = []
case = registry(CASES)


def copied(bench, here: Path, signed: bool = False) -> Path:
    """A copy of the bench's bundle (signed: with its bundle.json.sig)."""
    shutil.copytree(bench.bundle, here / "b")
    if not signed:
        (here / "b" / "bundle.json.sig").unlink()
    return here / "b"


def rehashed(bundle: Path, change=None) -> Path:
    """`bundle` with spec.json changed by `change` and bundle.json's table updated to match (what anyone able to
    edit a bundle can do); the signature, if any, is left as it was."""
    if change is not None:
        spec = json.loads((bundle / "spec.json").read_text())
        change(spec)
        (bundle / "spec.json").write_text(json.dumps(spec))
    manifest = json.loads((bundle / "bundle.json").read_text())
    manifest["files"]["spec.json"] = {"sha256": fileio.sha256_file(bundle / "spec.json"),
                                      "size": (bundle / "spec.json").stat().st_size}
    (bundle / "bundle.json").write_text(json.dumps(manifest))
    return bundle


def canary_module(here: Path) -> Path:
    """A module that, if imported, leaves here/CODE-RAN: the proof that a bundle ran code."""
    (here / "canarymod.py").write_text(f"open({str(here / 'CODE-RAN')!r}, 'w').close()\n"
                                       "def samples():\n    return []\n")
    return here / "CODE-RAN"


def build_bundle(bundle: Path, out: Path, *flags: str) -> list[str]:
    return ["build", str(bundle), "--target", "openvino", "--precision", "int8", "--out", str(out), *flags]


@case("bundle spec names calibration.function (rehashed)", 1, "spec.json: `calibration.function` is not allowed "
      "in a bundle", "make it again with `edgedeploy bundle`", existing=True)
def _(bench, here, out):
    ran = canary_module(here)
    bundle = rehashed(copied(bench, here), lambda s: s["calibration"].update(data=None, format="callable", function="canarymod:samples"))
    return Run(build_bundle(bundle, out), (str(bundle),), popen={"cwd": here}, canaries={"code_run": (ran,)})


@case("bundle spec names a model factory (rehashed)", 1, "spec.json: `model.factory` is not allowed in a bundle",
      existing=True)
def _(bench, here, out):
    ran = canary_module(here)
    bundle = rehashed(copied(bench, here), lambda s: s.update(model={"factory": "canarymod:samples"}))
    return Run(build_bundle(bundle, out), (str(bundle),), popen={"cwd": here}, canaries={"code_run": (ran,)})


@case("bundle spec with trust_code (rehashed)", 1, "spec.json: `trust_code` is not allowed in a bundle")
def _(bench, here, out):
    bundle = rehashed(copied(bench, here), lambda s: s.update(trust_code=True))
    return Run(build_bundle(bundle, out), (str(bundle),))


@case("bundle calibration.cache_dir outside it (rehashed)", 1, "spec.json: `calibration.cache_dir` is not allowed "
      "in a bundle")
def _(bench, here, out):
    bundle = rehashed(copied(bench, here), lambda s: s["calibration"].update(cache_dir=str(here / "planted-cache")))
    return Run(build_bundle(bundle, out), (str(bundle),), canaries={"outside": (here / "planted-cache",)})


@case("bundle calibration.data outside it (rehashed)", 1, "spec.json: `calibration.data` must name the bundle's own "
      "file ('calibration.npz')")
def _(bench, here, out):
    np_file = shutil.copyfile(bench.root / "calib1.npy", here / "elsewhere.npy")
    bundle = rehashed(copied(bench, here), lambda s: s["calibration"].update(data=str(np_file), format="npy"))
    return Run(build_bundle(bundle, out), (str(bundle),))


@case("bundle model.onnx outside it (rehashed)", 1, "spec.json: `model.onnx` must name the bundle's own file "
      "('deploy.onnx')")
def _(bench, here, out):
    bundle = rehashed(copied(bench, here), lambda s: s["model"].update(onnx="../../conv.onnx"))
    return Run(build_bundle(bundle, out), (str(bundle),))


@case("bundle validation.data outside it (rehashed)", 1, "spec.json: `validation.data` is not allowed in a bundle")
def _(bench, here, out):
    bundle = rehashed(copied(bench, here), lambda s: s["validation"].update(data=str(bench.root / "val.npz")))
    return Run(build_bundle(bundle, out), (str(bundle),))


@case("bundle TensorRT timing cache outside it (rehashed)", 1, "spec.json: `tensorrt.timing_cache` is not allowed "
      "in a bundle")
def _(bench, here, out):
    bundle = rehashed(copied(bench, here), lambda s: s["tensorrt"].update(timing_cache=str(here / "planted.cache")))
    return Run(build_bundle(bundle, out), (str(bundle),), canaries={"outside": (here / "planted.cache",)})


@case("bundle.json 200 000 levels deep", 1, "bundle.json is not JSON (nested too deeply)")
def _(bench, here, out):
    bundle = copied(bench, here)
    (bundle / "bundle.json").write_text("[" * 200_000 + "]" * 200_000)
    return Run(build_bundle(bundle, out), (str(bundle),))


# signatures -------------------------------------------------------------------------------------------------------

def signers(bench) -> str:
    return str(bench.root / "allowed_signers")


@case("signed bundle, a file tampered with", 1, "bundle refused: reference.npz does not match its sha256",
      existing=True)
def _(bench, here, out):
    bundle = copied(bench, here, signed=True)
    with open(bundle / "reference.npz", "r+b") as f:
        f.seek(100)
        f.write(b"\xff")
    return Run(build_bundle(bundle, out, "--allowed-signers", signers(bench)), (str(bundle),))


@case("signed bundle, spec.json changed and bundle.json rehashed", 1, "bundle.json.sig does not match bundle.json",
      existing=True)
def _(bench, here, out):
    ran = canary_module(here)
    bundle = rehashed(copied(bench, here, signed=True), lambda s: s["calibration"].update(data=None, format="callable", function="canarymod:samples"))
    return Run(build_bundle(bundle, out, "--allowed-signers", signers(bench)), (str(bundle),), popen={"cwd": here},
               canaries={"code_run": (ran,)})


@case("unsigned bundle where signatures are required", 1, "it is not signed (no bundle.json.sig)", "--sign KEY",
      existing=True)
def _(bench, here, out):
    bundle = copied(bench, here)
    return Run(build_bundle(bundle, out, "--allowed-signers", signers(bench)), (str(bundle),))


@case("bundle signed by a key not allowed", 1, "bundle.json.sig is not by a key in the allowed signers file",
      existing=True)
def _(bench, here, out):
    bundle = copied(bench, here)
    subprocess.run(["ssh-keygen", "-q", "-Y", "sign", "-f", str(bench.root / "other_key"), "-n", "edgedeploy-bundle",
                    str(bundle / "bundle.json")], check=True)
    return Run(build_bundle(bundle, out, "--allowed-signers", signers(bench)), (str(bundle),))


@case("--require-signature with no allowed signers", 2, "--require-signature needs an allowed signers file",
      "--allowed-signers FILE", existing=True)
def _(bench, here, out):
    bundle = copied(bench, here, signed=True)
    return Run(build_bundle(bundle, out, "--require-signature"), (str(bundle),))


@case("a bundle signed by `edgedeploy bundle --sign` builds where signatures are required", 0)
def _(bench, here, out):
    bench.bundle  # noqa: B018 (the keys)
    made = run_cli("bundle", str(bench.bundle_config), "--out", str(here / "signed"), "--sign",
                   str(bench.root / "signing_key"))
    assert made.returncode == 0, made.stderr

    def handled() -> str:
        origin = json.loads((out / "report.json").read_text())["bundle"]
        assert origin["signed_by"] == "ci@fleet", origin
        return f"built; report.json bundle.signed_by: {origin['signed_by']}"
    return Run(build_bundle(here / "signed", out, "--allowed-signers", signers(bench), "--require-signature"),
               handled=handled)


test_bad_input_gives_one_clear_line_and_keeps_the_output = matrix_test(CASES)
