"""Signed bundles: bundle.json signed with an OpenSSH key (`ssh-keygen -Y sign`, namespace `edgedeploy-bundle`), the
signature in bundle.json.sig beside it, checked on the device against an allowed_signers file (`ssh-keygen -Y
verify`) before anything else in the bundle is read.

bundle.json holds the size and sha256 of every other file, so a good signature over its exact bytes vouches for the
whole bundle; a changed file then fails its hash, and a rehashed bundle.json fails the signature. The bytes verified
are the bytes then parsed (read once), so nothing can swap bundle.json between the check and its use.

ssh-keygen is the OpenSSH client's own tool (8.2 or later), which `edgedeploy remote` needs anyway: no new key format,
and a fleet's keys are handled like its SSH keys (docs/bundles.md: one signing key in the CI secret store, its public
key in an allowed_signers file on every device).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from edgedeploy import fileio
from edgedeploy.errors import EdgeDeployError, UsageError

NAMESPACE = "edgedeploy-bundle"
SIGNATURE = "bundle.json.sig"
ENV_ALLOWED_SIGNERS = "EDGEDEPLOY_ALLOWED_SIGNERS"
_MAX_SIGNATURE_BYTES = 64 << 10
_MAX_SIGNERS_BYTES = 1 << 20


def _ssh_keygen() -> str:
    tool = shutil.which("ssh-keygen")
    if tool is None:
        raise EdgeDeployError("ssh-keygen (OpenSSH) is not installed, so bundle signatures cannot be made or checked",
                              fix="install the OpenSSH client (Debian/Ubuntu: apt install openssh-client)")
    return tool


def _said(done: subprocess.CompletedProcess) -> str:
    lines = [line.strip() for line in (done.stderr or b"").decode(errors="replace").splitlines() if line.strip()]
    return lines[-1] if lines else f"ssh-keygen exited with {done.returncode}"


def sign(manifest: Path, key: Path) -> Path:
    """Sign `manifest` (bundle.json) with the private key `key`; writes bundle.json.sig beside it and returns it."""
    with fileio.open_input(key, "signing key", fix="pass the private key file (ssh-keygen -t ed25519 -f KEY)"):
        pass
    signature = manifest.with_name(SIGNATURE)
    signature.unlink(missing_ok=True)
    done = subprocess.run([_ssh_keygen(), "-Y", "sign", "-f", str(key), "-n", NAMESPACE, "--", str(manifest)],
                          stdin=subprocess.DEVNULL, capture_output=True)
    if done.returncode != 0 or not signature.is_file():
        raise UsageError(f"ssh-keygen could not sign the bundle ({_said(done)})", where=str(key),
                         fix="pass an OpenSSH private key (ssh-keygen -t ed25519 -f KEY); a key with a passphrase "
                             "needs ssh-agent or a terminal")
    return signature


def allowed_signers(given: str | os.PathLike | None) -> Path | None:
    """The allowed_signers file to check bundles against: `given` (--allowed-signers), else $EDGEDEPLOY_ALLOWED_SIGNERS."""
    value = given if given is not None else os.environ.get(ENV_ALLOWED_SIGNERS) or None
    return None if value is None else Path(value)


def verify(folder: Path, manifest_bytes: bytes, signers: Path) -> str:
    """Check that bundle.json.sig is a good signature of `manifest_bytes` by a key in `signers` (namespace
    edgedeploy-bundle); returns the signer's principal. Anything else is one EdgeDeployError."""
    fileio.read_input(signers, "allowed signers file", max_bytes=_MAX_SIGNERS_BYTES,
                      fix=f"pass --allowed-signers FILE (or set {ENV_ALLOWED_SIGNERS}): lines of `PRINCIPAL "
                          "namespaces=\"edgedeploy-bundle\" KEYTYPE KEY`")
    signature = folder / SIGNATURE
    if not os.path.lexists(signature):
        raise EdgeDeployError(f"bundle refused: it is not signed (no {SIGNATURE}), and signatures are required here",
                              where=str(folder), fix="sign it where it is made: edgedeploy bundle ... --sign KEY")
    fileio.read_input(signature, "bundle signature", max_bytes=_MAX_SIGNATURE_BYTES,
                      fix="copy the bundle again, or sign it again with `edgedeploy bundle --sign KEY`")
    tool = _ssh_keygen()
    found = subprocess.run([tool, "-Y", "find-principals", "-s", str(signature), "-f", str(signers)],
                           stdin=subprocess.DEVNULL, capture_output=True)
    principals = found.stdout.decode(errors="replace").split() if found.returncode == 0 else []
    if not principals:
        raise EdgeDeployError(f"bundle refused: {SIGNATURE} is not by a key in the allowed signers file "
                              f"({_said(found)})", where=str(folder),
                              fix=f"sign it with a key listed in {signers}, or add that key's public half there")
    for principal in principals:
        done = subprocess.run([tool, "-Y", "verify", "-f", str(signers), "-I", principal, "-n", NAMESPACE,
                               "-s", str(signature)], input=manifest_bytes, capture_output=True)
        if done.returncode == 0:
            return principal
    raise EdgeDeployError(f"bundle refused: {SIGNATURE} does not match bundle.json (changed after it was signed: "
                          f"{_said(done)})", where=str(folder),
                          fix="copy the bundle again, or make and sign it again with `edgedeploy bundle --sign KEY`")


__all__ = ["sign", "verify", "allowed_signers", "NAMESPACE", "SIGNATURE", "ENV_ALLOWED_SIGNERS"]
