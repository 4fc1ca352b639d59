"""provisioner.commands.remote against a real OpenSSH server on loopback (tests/sshd.py).

One sshd serves as the bastion and, reached again from itself through a direct-tcpip channel, as the
targets (under different names, as instance ids would be); a second sshd gives a target a host key
of its own.
"""

from __future__ import annotations

import io
import os
import pty
import shutil
import socket
import stat
import subprocess
import termios
import time
from pathlib import Path

import pytest

from provisioner.engine.errors import ConfigError
from provisioner.commands.keys import KeyStore
from provisioner.commands.remote import (Endpoint, ExecResult, HostKeyChanged, Jump, RemoteError, interactive_shell,
                                run_commands)

from sshd import Sshd, free_port, keygen, require_openssh

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def sshd_factory(tmp_path):
    """Make and start sshd servers (`sshd_factory(allow_tcp_forwarding=False)`); all stopped at teardown."""
    servers: list[Sshd] = []

    def make(name: str | None = None, **kwargs) -> Sshd:
        server = Sshd(tmp_path / (name or f"sshd{len(servers)}"), **kwargs)
        servers.append(server)
        server.start()
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def client_key(tmp_path) -> Path:
    """A private key (ed25519, OpenSSH format, mode 0600) for the tests to log in with."""
    require_openssh()
    path = tmp_path / "client" / "id_ed25519"
    path.parent.mkdir()
    keygen(path)
    os.chmod(path, 0o600)
    return path


@pytest.fixture
def sshd(sshd_factory, client_key) -> Sshd:
    """A running sshd that accepts `client_key`."""
    server = sshd_factory("sshd")
    server.authorize(Path(f"{client_key}.pub").read_text())
    return server


def bastion_of(server: Sshd, name: str = "i-0bastion") -> Endpoint:
    return Endpoint(name, "127.0.0.1", server.port, server.user)


def target_of(server: Sshd, name: str, port: int | None = None) -> Endpoint:
    # As the bastion sees it: the same loopback address, a different instance.
    return Endpoint(name, "127.0.0.1", port or server.port, server.user)


def run(server: Sshd, targets: list[Endpoint], command: str, key: Path, known_hosts: Path, **kwargs):
    return run_commands(bastion_of(server), targets, command, key, known_hosts, **kwargs)


def known_names(known_hosts: Path) -> list[str]:
    return sorted(line.split()[0] for line in known_hosts.read_text().splitlines() if line.strip())


# ------------------------------------------------------------------------------------------------ exec

def test_exec_through_the_bastion_keeps_stdout_stderr_and_exit_status_apart(sshd, client_key, tmp_path):
    [result] = run(sshd, [target_of(sshd, "i-0target")], "echo hello; echo oops >&2; exit 3",
                   client_key, tmp_path / "known_hosts")

    assert (result.stdout, result.stderr, result.exit_status, result.error) == ("hello\n", "oops\n", 3, None)
    assert result.endpoint.name == "i-0target" and not result.ok


def test_exit_status_zero_and_megabytes_on_both_streams(sshd, client_key, tmp_path):
    known_hosts = tmp_path / "known_hosts"
    [ok] = run(sshd, [target_of(sshd, "i-0a")], "true", client_key, known_hosts)
    assert (ok.exit_status, ok.error, ok.ok) == (0, None, True)

    # 4 MB of stderr before the first byte of stdout: more than an SSH window (2 MB), so a reader
    # that waited for stdout's end before touching stderr would hang here.
    command = ("head -c 4194304 /dev/zero | tr '\\0' e >&2; head -c 1048576 /dev/zero | tr '\\0' o; "
               "printf 'caf\\303\\251 \\377'; exit 7")
    [big] = run(sshd, [target_of(sshd, "i-0a")], command, client_key, known_hosts, command_timeout=30)

    assert big.exit_status == 7 and big.error is None
    assert big.stderr == "e" * 4194304
    assert big.stdout == "o" * 1048576 + "café \ufffd"   # utf-8, undecodable bytes replaced


def test_output_that_comes_after_the_exit_status_is_kept(sshd, client_key, tmp_path):
    # The shell exits at once (sshd sends its status then), its background child writes later, through
    # the same pipe: the output ends at the channel's EOF, not at the status.
    [result] = run(sshd, [target_of(sshd, "i-0a")], "(sleep 0.5; echo late; echo later >&2) & echo early",
                   client_key, tmp_path / "known_hosts")
    assert (result.stdout, result.stderr, result.exit_status) == ("early\nlate\n", "later\n", 0)


def test_several_targets_run_in_parallel_and_come_back_in_target_order(sshd, client_key, tmp_path):
    known_hosts = tmp_path / "known_hosts"
    targets = [target_of(sshd, f"i-0{n}") for n in ("d", "a", "c", "b")]
    seen: list[str] = []

    results = run(sshd, targets, "date +%s.%N; sleep 1; date +%s.%N", client_key, known_hosts,
                  parallel=8, on_result=lambda r: seen.append(r.endpoint.name))

    assert [r.endpoint for r in results] == targets
    assert sorted(seen) == sorted(t.name for t in targets)
    assert all(r.exit_status == 0 and r.error is None for r in results), results
    spans = [tuple(float(x) for x in r.stdout.split()) for r in results]
    # The commands' own clocks: every one started before any of them ended, so they all overlapped.
    assert max(start for start, _ in spans) < min(end for _, end in spans)
    # Four first-use entries written by four threads at once, none lost, plus the bastion's.
    assert known_names(known_hosts) == sorted(["i-0bastion", "i-0a", "i-0b", "i-0c", "i-0d"])


def test_a_command_that_does_not_finish_is_given_up_after_command_timeout(sshd, client_key, tmp_path):
    pid_file = tmp_path / "sleep.pid"
    started = time.monotonic()
    try:
        [result] = run(sshd, [target_of(sshd, "i-0slow")], f"echo started; sleep 30 & echo $! > {pid_file}; wait",
                       client_key, tmp_path / "known_hosts", command_timeout=1)
    finally:
        if pid_file.exists():   # as root, sshd does not pass signals on; do not leave the sleep behind
            subprocess.run(["kill", pid_file.read_text().strip()], capture_output=True)

    assert time.monotonic() - started < 10
    assert result.exit_status is None
    assert result.error.startswith("no answer after 1 s")
    assert result.stdout == "started\n"   # what came before the deadline is kept


# ------------------------------------------------------------------------------------------- host keys

def test_host_keys_are_remembered_by_name_then_a_changed_bastion_key_stops_everything(sshd, client_key, tmp_path):
    known_hosts = tmp_path / "state" / "stack.known_hosts"
    target = target_of(sshd, "i-0target")

    [first] = run(sshd, [target], "echo first", client_key, known_hosts)
    assert first.stdout == "first\n"
    assert stat.S_IMODE(known_hosts.stat().st_mode) == 0o600
    # One entry per name, both the same server's key, keyed by name and never by address.
    assert known_names(known_hosts) == ["i-0bastion", "i-0target"]
    assert all(line.split()[1:] == sshd.host_public_key.split()[:2]
               for line in known_hosts.read_text().splitlines())

    [second] = run(sshd, [target], "echo second", client_key, known_hosts)
    assert second.stdout == "second\n"

    remembered = known_hosts.read_bytes()
    old_fingerprint = sshd.host_fingerprint()
    sshd.restart(new_host_key=True)
    new_fingerprint = sshd.host_fingerprint()
    marker = tmp_path / "ran"

    with pytest.raises(HostKeyChanged) as caught:
        run(sshd, [target], f"touch {marker}", client_key, known_hosts)

    error = caught.value
    assert "i-0bastion" in error.message and f"127.0.0.1:{sshd.port}" in error.message
    assert old_fingerprint in error.message and new_fingerprint in error.message
    assert old_fingerprint.startswith("SHA256:") and not old_fingerprint.endswith("=")
    assert f"{known_hosts}:1" in error.message   # the bastion's line: it was remembered first
    assert error.hint.endswith(f"`ssh-keygen -R i-0bastion -f {known_hosts}` and connect again")
    assert not marker.exists()
    assert known_hosts.read_bytes() == remembered

    # The hint is a command that works: the bastion is trusted anew, the target's old key is still
    # remembered (and now wrong), so only the target fails.
    subprocess.run(["ssh-keygen", "-R", "i-0bastion", "-f", str(known_hosts)], check=True, capture_output=True)
    [after] = run(sshd, [target], f"touch {marker}", client_key, known_hosts)
    assert after.error.startswith("host key changed") and not marker.exists()


def test_a_changed_target_key_fails_that_target_only(sshd_factory, client_key, tmp_path):
    public = Path(f"{client_key}.pub").read_text()
    bastion, other = sshd_factory("bastion"), sshd_factory("other")
    bastion.authorize(public)
    other.authorize(public)
    known_hosts = tmp_path / "known_hosts"
    targets = [target_of(bastion, "i-0good"), target_of(other, "i-0replaced"), target_of(bastion, "i-0fine")]

    assert [r.exit_status for r in run(bastion, targets, "true", client_key, known_hosts)] == [0, 0, 0]
    remembered = known_hosts.read_bytes()
    other.restart(new_host_key=True)

    results = run(bastion, targets, f"touch {tmp_path}/ran-$(hostname)-$$ && echo ran", client_key, known_hosts)

    good, replaced, fine = results
    assert good.stdout == fine.stdout == "ran\n" and good.exit_status == fine.exit_status == 0
    assert replaced.exit_status is None and replaced.stdout == ""
    assert replaced.error.startswith("host key changed") and other.host_fingerprint() in replaced.error
    assert "ssh-keygen -R i-0replaced" in replaced.hint
    assert len(list(tmp_path.glob("ran-*"))) == 2   # the replaced target ran nothing
    assert known_hosts.read_bytes() == remembered


def test_the_known_hosts_file_works_with_openssh_through_host_key_alias(sshd, client_key, tmp_path):
    if shutil.which("ssh") is None:
        pytest.skip("the OpenSSH client is not installed")
    known_hosts = tmp_path / "known_hosts"
    run(sshd, [], "true", client_key, known_hosts)   # remembers the bastion only

    ssh = ["ssh", "-F", "/dev/null", "-i", str(client_key), "-p", str(sshd.port),
           "-o", f"UserKnownHostsFile={known_hosts}", "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes",
           "-o", "GlobalKnownHostsFile=/dev/null", f"{sshd.user}@127.0.0.1", "echo via-openssh"]
    answer = subprocess.run(ssh[:-2] + ["-o", "HostKeyAlias=i-0bastion"] + ssh[-2:],
                            capture_output=True, text=True, timeout=20)
    assert answer.stdout == "via-openssh\n", answer.stderr
    # Without the alias, OpenSSH looks the address up, which is not in the file: it refuses.
    refused = subprocess.run(ssh, capture_output=True, text=True, timeout=20)
    assert refused.returncode == 255 and "Host key verification failed" in refused.stderr


# ---------------------------------------------------------------------------------------------- keys

def test_a_key_others_can_read_is_refused_with_the_chmod_hint(sshd, client_key, tmp_path):
    os.chmod(client_key, 0o644)
    with pytest.raises(ConfigError) as caught:
        run(sshd, [target_of(sshd, "i-0t")], "true", client_key, tmp_path / "known_hosts")
    assert "0644" in caught.value.message and caught.value.hint == f"chmod 600 {client_key}"
    assert not (tmp_path / "known_hosts").exists()   # refused before connecting anywhere


def test_a_missing_key_points_at_provision_up_bastion(sshd, tmp_path):
    with pytest.raises(ConfigError) as caught:
        run(sshd, [], "true", tmp_path / "nowhere" / "stack.id_ed25519", tmp_path / "known_hosts")
    assert "provision up --bastion" in caught.value.hint


def test_the_keystore_key_is_private_and_logs_in(sshd, tmp_path):
    store = KeyStore(tmp_path / "state", "stack")
    public = store.generate()

    assert stat.S_IMODE(os.stat(store.private_key_path).st_mode) == 0o600
    sshd.authorize(public)
    [result] = run(sshd, [target_of(sshd, "i-0t")], "echo in", store.private_key_path, store.known_hosts_path)
    assert result.stdout == "in\n"
    assert stat.S_IMODE(os.stat(store.known_hosts_path).st_mode) == 0o600


@pytest.mark.parametrize("kind", ["ecdsa", "rsa"])
def test_ecdsa_and_rsa_keys_log_in_too(sshd, tmp_path, kind):
    key = tmp_path / f"id_{kind}"
    sshd.authorize(keygen(key, kind))
    os.chmod(key, 0o600)
    [result] = run(sshd, [target_of(sshd, "i-0t")], "echo in", key, tmp_path / "known_hosts")
    assert result.stdout == "in\n"


def test_a_key_the_bastion_does_not_know_is_an_auth_error_in_words(sshd, tmp_path):
    stranger = tmp_path / "stranger"
    keygen(stranger)
    os.chmod(stranger, 0o600)
    with pytest.raises(RemoteError) as caught:
        run(sshd, [target_of(sshd, "i-0t")], "true", stranger, tmp_path / "known_hosts")
    assert caught.value.message == (f"the bastion 127.0.0.1:{sshd.port} (i-0bastion) refused the key {stranger} "
                                    f"for user {sshd.user}")
    assert "key pair" in caught.value.hint


def test_a_target_that_refuses_the_key_fails_alone(sshd_factory, client_key, tmp_path):
    bastion, stranger = sshd_factory("bastion"), sshd_factory("stranger")
    bastion.authorize(Path(f"{client_key}.pub").read_text())   # `stranger` authorizes nobody
    good, refusing = run(bastion, [target_of(bastion, "i-0good"), target_of(stranger, "i-0other")], "echo ok",
                         client_key, tmp_path / "known_hosts")
    assert good.stdout == "ok\n"
    assert refusing.error == f"refused the key {client_key} for user {stranger.user}"


# ------------------------------------------------------------------------------ unreachable, timeouts

def test_a_closed_bastion_port_is_refused_at_once(client_key, tmp_path):
    port = free_port()
    started = time.monotonic()
    with pytest.raises(RemoteError) as caught:
        run_commands(Endpoint("i-0gone", "127.0.0.1", port), [], "true", client_key, tmp_path / "known_hosts",
                     connect_timeout=5)
    assert time.monotonic() - started < 2
    assert caught.value.message == f"cannot reach the bastion 127.0.0.1:{port} (i-0gone): connection refused"


def test_a_port_that_never_speaks_ssh_times_out_on_the_banner(client_key, tmp_path):
    with socket.socket() as silent:   # the kernel accepts the connection; nobody ever writes to it
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(RemoteError) as caught:
            run_commands(Endpoint("i-0mute", "127.0.0.1", port), [], "true", client_key, tmp_path / "known_hosts",
                         connect_timeout=1)
        assert time.monotonic() - started < 4
    assert caught.value.message.startswith(f"cannot reach the bastion 127.0.0.1:{port} (i-0mute): "
                                           "no SSH banner within 1s")


def test_a_tcp_connect_that_gets_no_answer_times_out(client_key, tmp_path):
    # A listener whose accept queue is full drops further SYNs: the loopback stand-in for a
    # security group that silently drops SSH.
    fillers = []
    with socket.socket() as full:
        full.bind(("127.0.0.1", 0))
        full.listen(0)
        port = full.getsockname()[1]
        try:
            for _ in range(16):
                filler = socket.socket()
                fillers.append(filler)
                filler.settimeout(0.3)
                filler.connect(("127.0.0.1", port))
            pytest.skip("the kernel kept accepting connections; cannot fill the accept queue")
        except TimeoutError:
            pass
        started = time.monotonic()
        with pytest.raises(RemoteError) as caught:
            run_commands(Endpoint("i-0dark", "127.0.0.1", port), [], "true", client_key, tmp_path / "known_hosts",
                         connect_timeout=1)
        assert time.monotonic() - started < 4
    for filler in fillers:
        filler.close()
    assert caught.value.message == f"cannot reach the bastion 127.0.0.1:{port} (i-0dark): timed out after 1s"
    assert "security group" in caught.value.hint


def test_a_bastion_without_forwarding_fails_each_target_in_words(sshd_factory, client_key, tmp_path):
    bastion = sshd_factory("noforward", allow_tcp_forwarding=False)
    bastion.authorize(Path(f"{client_key}.pub").read_text())
    results = run(bastion, [target_of(bastion, "i-0a"), target_of(bastion, "i-0b")], "true", client_key,
                  tmp_path / "known_hosts")
    for result in results:
        assert result.exit_status is None
        assert result.error == ("the bastion could not open a connection to it: administratively prohibited "
                                "(its sshd has AllowTcpForwarding no)")
        assert "AllowTcpForwarding yes" in result.hint


def test_a_target_the_bastion_cannot_connect_to_fails_alone(sshd, client_key, tmp_path):
    closed = free_port()
    up, down = run(sshd, [target_of(sshd, "i-0up"), target_of(sshd, "i-0down", port=closed)], "echo up",
                   client_key, tmp_path / "known_hosts")
    assert up.stdout == "up\n"
    assert down.error == "the bastion could not open a connection to it: connect failed"
    assert "security group" in down.hint

    # Through Jump directly, the same failure is a RemoteError naming the target and its address.
    with Jump(bastion_of(sshd), client_key, tmp_path / "known_hosts") as jump:
        with pytest.raises(RemoteError) as caught:
            jump.connect(target_of(sshd, "i-0down", port=closed))
    assert caught.value.message == (f"i-0down (127.0.0.1:{closed}) via the bastion: the bastion could not open "
                                    "a connection to it: connect failed")


# ---------------------------------------------------------------------------------------- the shell

def test_a_shell_fed_from_a_pipe_returns_the_remote_exit_status(sshd, client_key, tmp_path):
    out = io.BytesIO()
    status = interactive_shell(bastion_of(sshd), target_of(sshd, "i-0t"), client_key, tmp_path / "known_hosts",
                               stdin=io.BytesIO(b"echo hi\ntest -t 0 || echo no-tty\nexit 5\n"), stdout=out)
    assert status == 5
    assert out.getvalue() == b"hi\nno-tty\n"


def test_a_shell_on_a_terminal_gets_a_pty_of_its_size_and_the_terminal_back(sshd, client_key, tmp_path):
    import fcntl
    import struct

    master, slave = pty.openpty()
    try:
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 111, 0, 0))
        before = termios.tcgetattr(slave)
        os.write(master, b"stty size; exit 4\n")
        out = io.BytesIO()
        with open(slave, "rb", buffering=0, closefd=False) as terminal:
            status = interactive_shell(bastion_of(sshd), target_of(sshd, "i-0t"), client_key,
                                       tmp_path / "known_hosts", stdin=terminal, stdout=out)
        assert status == 4
        assert b"33 111" in out.getvalue()
        assert termios.tcgetattr(slave) == before   # raw mode undone
    finally:
        os.close(master)
        os.close(slave)


def test_a_shell_to_a_changed_host_raises_and_sends_nothing(sshd, client_key, tmp_path):
    known_hosts = tmp_path / "known_hosts"
    run(sshd, [target_of(sshd, "i-0t")], "true", client_key, known_hosts)
    sshd.restart(new_host_key=True)
    marker = tmp_path / "ran"
    with pytest.raises(HostKeyChanged):
        interactive_shell(bastion_of(sshd), target_of(sshd, "i-0t"), client_key, known_hosts,
                          stdin=io.BytesIO(f"touch {marker}\n".encode()), stdout=io.BytesIO())
    assert not marker.exists()


def test_exec_result_records_how_long_it_took(sshd, client_key, tmp_path):
    [result] = run(sshd, [target_of(sshd, "i-0t")], "sleep 0.3", client_key, tmp_path / "known_hosts")
    assert isinstance(result, ExecResult) and result.seconds >= 0.3
