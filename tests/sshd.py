"""A real OpenSSH server on loopback for the SSH tests: its own host key, config, authorized_keys,
pid file and log, all in the test's tmp_path; the login user is whoever runs the tests.

Skipped locally when sshd or ssh-keygen is missing; a failure when CI=true (CI installs them).
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

SSHD = "/usr/sbin/sshd"
START_DEADLINE = 10.0


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def require_openssh() -> str:
    """The ssh-keygen path; skips (locally) or fails (in CI) when OpenSSH is not installed."""
    keygen = shutil.which("ssh-keygen")
    missing = [what for what, ok in (("openssh-server (/usr/sbin/sshd)", os.access(SSHD, os.X_OK)),
                                     ("openssh-client (ssh-keygen)", keygen is not None)) if not ok]
    if missing:
        reason = f"{' and '.join(missing)} not installed"
        if _in_ci():
            pytest.fail(f"{reason} (required when CI=true)")
        pytest.skip(reason)
    return keygen


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def keygen(path: Path, kind: str = "ed25519") -> str:
    """A new key pair at `path` (no passphrase); returns the public line."""
    path.unlink(missing_ok=True)
    Path(f"{path}.pub").unlink(missing_ok=True)
    subprocess.run([require_openssh(), "-q", "-t", kind, "-N", "", "-C", "test", "-f", str(path)],
                   check=True, capture_output=True)
    return Path(f"{path}.pub").read_text().strip()


def _account_locked(user: str) -> bool:
    # With UsePAM no, sshd refuses an account whose shadow password starts with "!" (locked), even for
    # key logins. Only root can read /etc/shadow, and only root's sshd makes that check matter here.
    try:
        for line in Path("/etc/shadow").read_text().splitlines():
            fields = line.split(":")
            if fields[0] == user:
                return fields[1].startswith("!")
    except OSError:
        pass
    return False


class Sshd:
    """One sshd -D on 127.0.0.1:`port`. `start()`, `stop()`, `restart(new_host_key=True)`."""

    def __init__(self, root: Path, *, allow_tcp_forwarding: bool = True):
        require_openssh()
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.user = getpass.getuser()
        self.allow_tcp_forwarding = allow_tcp_forwarding
        self.host_key = root / "ssh_host_ed25519_key"
        self.authorized_keys = root / "authorized_keys"
        self.authorized_keys.touch()
        self.config = root / "sshd_config"
        self.log_path = root / "sshd.log"
        self.port = free_port()
        self.process: subprocess.Popen | None = None
        keygen(self.host_key)

    @property
    def host_public_key(self) -> str:
        return Path(f"{self.host_key}.pub").read_text().strip()

    def host_fingerprint(self) -> str:
        out = subprocess.run([require_openssh(), "-l", "-E", "sha256", "-f", f"{self.host_key}.pub"],
                             check=True, capture_output=True, text=True).stdout
        return out.split()[1]   # "256 SHA256:... test (ED25519)"

    def authorize(self, public_key: str) -> None:
        with self.authorized_keys.open("a") as f:
            f.write(public_key.strip() + "\n")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def _write_config(self, extra: list[str]) -> None:
        lines = [
            f"Port {self.port}",
            "ListenAddress 127.0.0.1",
            f"HostKey {self.host_key}",
            f"PidFile {self.root / 'sshd.pid'}",
            f"AuthorizedKeysFile {self.authorized_keys}",
            "StrictModes no",   # tmp_path's parents are not root-owned 0755 all the way up
            f"UsePAM {'yes' if _account_locked(self.user) else 'no'}",
            "PermitRootLogin prohibit-password",   # CI runs the tests as root
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            f"AllowTcpForwarding {'yes' if self.allow_tcp_forwarding else 'no'}",
            "LogLevel VERBOSE",
            "PrintMotd no",
            *extra,
        ]
        self.config.write_text("\n".join(lines) + "\n")

    def _config_ok(self) -> tuple[bool, str]:
        check = subprocess.run([SSHD, "-t", "-f", str(self.config)], capture_output=True, text=True)
        return check.returncode == 0, check.stderr

    def start(self) -> None:
        if os.geteuid() == 0:
            # Root's sshd drops privileges into this empty directory; the openssh-server package makes
            # it at boot (tmpfiles.d), which a container or CI runner may never have run.
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        # OpenSSH 9.8+ blocks a source address for a while after failed or abandoned logins, which the
        # tests make on purpose; older servers do not know the option (and reject unknown ones).
        self._write_config(["PerSourcePenalties no"])
        ok, _ = self._config_ok()
        if not ok:
            self._write_config([])
            ok, why = self._config_ok()
            if not ok:
                raise RuntimeError(f"sshd rejects its test config {self.config}: {why}")
        offset = len(self.log())   # a restart appends to the same log
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen([SSHD, "-D", "-e", "-f", str(self.config)],
                                            stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        deadline = time.monotonic() + START_DEADLINE
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"sshd exited with {self.process.returncode}:\n{self.log()}")
            # sshd logs this once it listens; a bare TCP probe would show up in its log as a failed login.
            if f"Server listening on 127.0.0.1 port {self.port}" in self.log()[offset:]:
                return
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"sshd did not listen on 127.0.0.1:{self.port} within {START_DEADLINE}s:\n"
                                   f"{self.log()}")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def restart(self, *, new_host_key: bool = False) -> None:
        """Stop and start again on the same port; with a new host key if asked (the instance "replaced")."""
        self.stop()
        if new_host_key:
            keygen(self.host_key)
        self.start()
