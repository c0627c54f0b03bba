"""The system's OpenSSH client (ssh, scp) as edgedeploy uses it: whatever the user configured applies — ~/.ssh/config
host aliases, identities, the agent, ProxyJump, known_hosts — because edgedeploy only ever runs `ssh` and `scp`.

One master connection per command (`ControlMaster`, a socket in a private temporary folder) carries every later ssh and
scp call, so a device behind a jump host or a passphrase prompt is connected to once. `ControlPersist` is short, so a
master left behind by a killed edgedeploy exits on its own.

ssh exits 255 for its own errors and with the remote command's status otherwise; scp exits non-zero for any failure.
Either becomes one EdgeDeployError naming the device and what ssh said.

No remote shell ever sees a path it could expand: remote commands are quoted for the device's shell (shlex), copies go
over SFTP (`scp -s`: the path is a file name to the SFTP server, never a shell word, unlike scp's legacy protocol,
which OpenSSH before 9.0 uses by default), a remote path with a control character is refused, and `--` ends the
options before the destination on every ssh and scp command line (a destination starting with `-` is a usage error).
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from edgedeploy.errors import EdgeDeployError, UsageError

SSH_ERROR = 255
_PERSIST_S = 30  # a master nobody uses exits after this long
# what ssh and scp print when the connection itself went away
_LOST = ("closed by remote host", "Connection closed", "onnection reset", "lost connection", "Broken pipe",
         "timed out", "mux_client", "Connection refused", "Could not resolve", "No route to host", "Network is "
         "unreachable", "client_loop")


@dataclass(frozen=True)
class Destination:
    """`[USER@]HOST[:PORT]`; HOST may be an alias from ~/.ssh/config, an IPv6 address in brackets."""

    host: str  # what ssh is given: `user@host` or an alias
    port: int | None = None

    @classmethod
    def parse(cls, text: str) -> Destination:
        if text.startswith("-"):
            raise UsageError(f"the device {text!r} starts with '-', which ssh would read as an option", where=text,
                             fix="write it as USER@HOST, USER@HOST:PORT or an alias from ~/.ssh/config")
        match = re.fullmatch(r"((?:[^@\s:/]+@)?)(\[[0-9A-Fa-f:.]+\]|[^@\s:/\[\]]+)(?::(\d{1,5}))?", text)
        if not match or not text.isprintable():
            raise UsageError(f"cannot read the device {text!r}", fix="write it as USER@HOST, USER@HOST:PORT or an "
                                                                     "alias from ~/.ssh/config")
        user, host, port = match.groups()
        if port is not None and not 0 < int(port) < 65536:
            raise UsageError(f"port {port} is out of range", where=text)
        return cls(user + host.strip("[]"), int(port) if port else None)

    def __str__(self) -> str:
        return self.host + (f":{self.port}" if self.port else "")


@dataclass
class Ssh:
    """ssh/scp to one device; `with Ssh(...) as ssh:` holds the master connection."""

    destination: Destination
    config: Path | None = None  # -F: an ssh_config instead of ~/.ssh/config
    options: list[str] = field(default_factory=list)  # -o KEY=VALUE, as on ssh's own command line
    bwlimit_kbit: int | None = None  # scp -l
    _socket_dir: str | None = None

    def __enter__(self) -> Ssh:
        for tool in ("ssh", "scp"):
            if shutil.which(tool) is None:
                raise EdgeDeployError(f"the OpenSSH client ({tool}) is not installed",
                                      fix="install it (Debian/Ubuntu: apt install openssh-client)")
        self._socket_dir = tempfile.mkdtemp(prefix="edgedeploy-ssh-")
        with tempfile.TemporaryFile() as err:  # -f forks: its child keeps a pipe open, a file it does not
            done = subprocess.run(["ssh", *self._common(master=False), "-o", "ControlMaster=yes",
                                   "-o", f"ControlPersist={_PERSIST_S}", "-f", "-N", "--", self.destination.host],
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
            err.seek(0)
            said = err.read().decode(errors="replace")
        if done.returncode != 0:
            self._cleanup()
            raise connection_error(self.destination, said, "connecting")
        return self

    def __exit__(self, *exc: object) -> None:
        subprocess.run(["ssh", *self._common(), "-O", "exit", "--", self.destination.host],
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._cleanup()

    def _cleanup(self) -> None:
        if self._socket_dir is not None:
            shutil.rmtree(self._socket_dir, ignore_errors=True)
            self._socket_dir = None

    def _common(self, master: bool = True) -> list[str]:
        """Options for ssh and scp alike (both take -F and -o; -o Port works for both, unlike -p / -P)."""
        args = ["-F", str(self.config)] if self.config else []
        for option in self.options:
            args += ["-o", option]
        if self.destination.port:
            args += ["-o", f"Port={self.destination.port}"]
        args += ["-o", f"ControlPath={self._socket_dir}/%C"]
        if master:
            args += ["-o", "ControlMaster=no"]
        return args

    # ------------------------------------------------------------------------------------------------- commands
    def run(self, argv: list[str] | str, what: str, *, stream: bool = False,
            timeout: float | None = None) -> subprocess.CompletedProcess:
        """Run a command on the device (a list is quoted for its shell; a string is a shell script). With `stream`,
        its output is shown as it comes (stderr still kept for an error message); a failed connection raises."""
        script = argv if isinstance(argv, str) else shlex.join(argv)
        cmd = ["ssh", *self._common(), "--", self.destination.host, script]
        if not stream:
            done = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
        else:
            done = _streamed(cmd)
        if done.returncode == SSH_ERROR:  # ssh's own failure, never the command's
            raise connection_error(self.destination, done.stderr, what, lost=True)
        return done

    def upload(self, local: Path, remote: str, what: str) -> None:
        """Copy a local folder to the device (`remote` must not exist yet: scp -r then creates it)."""
        self._scp([str(local), f"{self._remote_host()}:{remote_path(remote)}"], what)

    def download(self, remote: str, local: Path, what: str) -> None:
        """Copy a folder from the device to `local` (which must not exist yet)."""
        self._scp([f"{self._remote_host()}:{remote_path(remote)}", str(local)], what)

    def _remote_host(self) -> str:
        user, at, name = self.destination.host.rpartition("@")
        return f"{user}{at}[{name}]" if ":" in name else self.destination.host  # IPv6 needs brackets in scp's syntax

    def _scp(self, paths: list[str], what: str) -> None:
        limit = ["-l", str(self.bwlimit_kbit)] if self.bwlimit_kbit else []
        done = subprocess.run(["scp", "-s", "-q", "-r", "-p", *limit, *self._common(), "--", *paths],
                              stdin=subprocess.DEVNULL, capture_output=True, text=True)
        if done.returncode != 0:
            raise connection_error(self.destination, done.stderr, what)


def remote_path(path: str, flag: str = "remote path") -> str:
    """`path` checked as a path on the device: no control characters (a newline would end an SFTP or shell line),
    not starting with `-` (an option to the commands it is given to)."""
    if not path or not path.isprintable():
        raise UsageError(f"the {flag} {path!r} holds a control character (or is empty)", where=repr(path),
                         fix="choose a path of printable characters")
    if path.startswith("-"):
        raise UsageError(f"the {flag} {path!r} starts with '-', which a command would read as an option",
                         where=path, fix="give it as ./PATH or an absolute path")
    return path


def _streamed(cmd: list[str]) -> subprocess.CompletedProcess:
    """Run `cmd` with stdout passed straight through and stderr copied line by line (the tail kept)."""
    tail: deque[str] = deque(maxlen=20)
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def copy() -> None:
        for raw in iter(proc.stderr.readline, b""):
            sys.stderr.buffer.write(raw)
            sys.stderr.buffer.flush()
            tail.append(raw.decode(errors="replace"))

    reader = threading.Thread(target=copy, daemon=True)
    reader.start()
    try:
        code = proc.wait()
    except BaseException:  # interrupted: this ssh goes too (the caller stops the device's command)
        proc.terminate()
        raise
    reader.join()
    return subprocess.CompletedProcess(cmd, code, None, "".join(tail))


def connection_error(destination: Destination, said: str, what: str, lost: bool = False) -> EdgeDeployError:
    """One line for a failed ssh/scp: what ssh said (its last meaningful line) and what to do about it. `lost`: ssh
    itself failed (exit 255), so the connection went, even when ssh had nothing to say (a killed session)."""
    lines = [line.strip() for line in said.splitlines()
             if line.strip() and not line.startswith(("@@@", "Warning: Permanently added"))]
    if any("Host key verification failed" in line or "IDENTIFICATION HAS CHANGED" in line for line in lines):
        return EdgeDeployError(
            "the device's host key does not match the one in known_hosts (ssh: Host key verification failed)",
            where=str(destination), fix="if the device was reinstalled, check its new key's fingerprint on the device "
                                        "and remove the old one with `ssh-keygen -R HOST`; otherwise do not connect")
    signs = [line for line in lines if any(sign in line for sign in _LOST)]
    detail = (signs or lines or ["no message"])[-1]
    if what == "connecting":
        return EdgeDeployError(f"cannot connect over SSH ({detail})", where=str(destination),
                               fix="check that `ssh DEVICE` works from this shell (host, port, key, agent, "
                                   "~/.ssh/config)")
    if signs or lost or not lines:
        detail = detail if signs else "ssh exited with 255"
        return EdgeDeployError(f"the SSH connection was lost while {what} ({detail})", where=str(destination),
                               fix="nothing local was changed; check the device and the network, then run the "
                                   "command again")
    return EdgeDeployError(f"{what} failed on the device ({detail})", where=str(destination),
                           fix="nothing local was changed; check the device's disk and permissions")


__all__ = ["Destination", "Ssh", "connection_error", "remote_path", "SSH_ERROR"]
