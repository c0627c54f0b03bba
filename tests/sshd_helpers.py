"""A real OpenSSH server for the remote tests: Debian's sshd on 127.0.0.1, a free port, its own host key, a user key
authorised for the current user, and its own sshd_config; nothing of the system's configuration is read or changed.

sshd running as root needs its privilege-separation folder (/run/sshd), which the system service creates when it
starts; the fixture creates it the same way when it is missing. The client side is an ssh_config naming the host
`device`, so the code under test reads it as it would read a user's ~/.ssh/config.
"""

from __future__ import annotations

import getpass
import os
import socket
import subprocess
import time
from pathlib import Path

import psutil

SSHD = "/usr/sbin/sshd"


class SshServer:
    def __init__(self, folder: Path):
        if not Path(SSHD).is_file():
            raise RuntimeError(f"{SSHD} not found: install Debian's openssh-server (apt-get install openssh-server); "
                               ".ci/run does")
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        for name in ("host_key", "user_key", "other_host_key"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(folder / name)],
                           check=True)
        (folder / "authorized_keys").write_text((folder / "user_key.pub").read_text())
        self.port = _free_port()
        self.user = getpass.getuser()
        (folder / "sshd_config").write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {folder / 'host_key'}\nPidFile {folder / 'sshd.pid'}\n"
            f"AuthorizedKeysFile {folder / 'authorized_keys'}\nPubkeyAuthentication yes\nPasswordAuthentication no\n"
            f"KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nPermitRootLogin prohibit-password\n"
            f"AllowUsers {self.user}\nSubsystem sftp /usr/lib/openssh/sftp-server\nMaxStartups 50\n")
        host_key = " ".join((folder / "host_key.pub").read_text().split()[:2])
        other_key = " ".join((folder / "other_host_key.pub").read_text().split()[:2])
        (folder / "known_hosts").write_text(f"[127.0.0.1]:{self.port} {host_key}\n")
        (folder / "wrong_known_hosts").write_text(f"[127.0.0.1]:{self.port} {other_key}\n")
        self.config = folder / "ssh_config"
        self.config.write_text(
            f"Host device\n  HostName 127.0.0.1\n  Port {self.port}\n  User {self.user}\n"
            f"  IdentityFile {folder / 'user_key'}\n  IdentitiesOnly yes\n  UserKnownHostsFile {folder / 'known_hosts'}\n"
            f"  StrictHostKeyChecking yes\n  BatchMode yes\n  ConnectTimeout 10\n")
        self.process: subprocess.Popen | None = None

    def start(self) -> SshServer:
        if os.geteuid() == 0:
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        self.log = open(self.folder / "sshd.log", "ab")
        self.process = subprocess.Popen([SSHD, "-D", "-e", "-f", str(self.folder / "sshd_config")],
                                        stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"sshd exited: {(self.folder / 'sshd.log').read_text()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("sshd did not start listening within 10 s")

    def kill(self) -> None:
        """Drop every connection at once, as a network failure would: sshd and each session's sshd (they run in
        sessions of their own). Commands the sessions started run on, as they would on a device."""
        self._kill(lambda p: p.name().startswith("sshd"))
        self.process = None

    def stop(self) -> None:
        """sshd, its sessions and everything they started."""
        self._kill(lambda p: True)
        self.process = None

    def _kill(self, which) -> None:
        if self.process is None:
            return
        try:
            root = psutil.Process(self.process.pid)
            processes = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            processes = []
        for p in processes:
            try:
                if which(p):
                    p.kill()
            except psutil.NoSuchProcess:
                pass
        self.process.wait(timeout=10)
        self.log.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
