"""SSH to the stack's instances through its bastion: run a command on several at once, or open a shell.

One SSH connection goes to the bastion; each target is reached through a ``direct-tcpip`` channel
over it (what ``ssh -J`` does), so the instances need no public address and the private key never
leaves this machine (no agent forwarding, nothing copied to the bastion).

Host keys are trusted on first use and verified afterwards, in an OpenSSH ``known_hosts`` file kept
beside the state file. Entries are keyed by the endpoint's *name* (the EC2 instance id), never by
its address: a replacement instance reuses the private IP of the one it replaces, and keying by IP
would turn every replacement into a "host key changed" alarm (teaching people to ignore it), while
an instance id is never reused. The same file works with OpenSSH's ``-o HostKeyAlias=ID``.

Every failure is a `RemoteError` naming the host and what happened, in words; nothing waits
without a deadline (TCP connect, SSH banner, key exchange, authentication, channel open, command).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import select
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import paramiko
from paramiko.hostkeys import HostKeyEntry, HostKeys

from provisioner.engine.errors import EXIT_USAGE, ConfigError, ProvisionError
from provisioner.engine.state import write_atomic

# paramiko logs each failure (with its traceback) at ERROR before raising it; we raise it in words
# instead. Its records go here, silent unless the application configures logging.
PARAMIKO_LOG = f"{__name__}.paramiko"
logging.getLogger(__name__).addHandler(logging.NullHandler())
# What a failed direct-tcpip open means, by the RFC 4254 reason code the bastion's sshd sends.
CHANNEL_OPEN_FAILURES = {
    1: "administratively prohibited (its sshd has AllowTcpForwarding no)",
    2: "connect failed",
    3: "unknown channel type",
    4: "resource shortage",
}
# The bastion's hint for each way a connection to it fails.
_BASTION_HINTS = {
    "timeout": "is the bastion running (`provision status`), and does its security group allow SSH "
               "from your address (--ssh-cidr)?",
    "refused": "nothing listens for SSH there yet: is the instance still booting?",
    "auth": "was it launched with this stack's key pair? `provision up --bastion` imports the key it "
            "keeps in the state directory",
}
_TARGET_HINTS = {
    "channel": "is the instance running, and does its security group allow SSH from the bastion's?",
    "forwarding": "the bastion's sshd must allow TCP forwarding (AllowTcpForwarding yes, its default)",
    "auth": "was it launched with this stack's key pair? `provision up --bastion` imports the key it "
            "keeps in the state directory",
}


@dataclass(frozen=True)
class Endpoint:
    name: str          # the name its host key is remembered under: an EC2 instance id, or a label
    host: str          # bastion: its public address; target: its private address, seen from the bastion
    port: int = 22
    user: str = "ubuntu"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


class RemoteError(ProvisionError):
    """An SSH connection or command failed; `reason` is the failure in words, without the host."""

    def __init__(self, message: str, hint: str | None = None, *, endpoint: Endpoint | None = None,
                 reason: str | None = None):
        super().__init__(message, hint)
        self.endpoint = endpoint
        self.reason = reason or message


class HostKeyChanged(RemoteError):
    """The host offered a key other than the one remembered for its name: nothing was run."""

    exit_code = EXIT_USAGE


@dataclass
class ExecResult:
    endpoint: Endpoint
    exit_status: int | None     # None when the command could not run or did not finish (error says why)
    stdout: str
    stderr: str
    error: str | None = None    # the reason in words: timeout, refused, auth, host key changed
    seconds: float = 0.0
    hint: str | None = None     # what to do about `error`, when there is something to do

    @property
    def ok(self) -> bool:
        return self.error is None and self.exit_status == 0


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's fingerprint of a public key: ``SHA256:`` and the unpadded base64 of its digest."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")


def load_private_key(path: str | os.PathLike) -> paramiko.PKey:
    """The private key (ed25519, ECDSA or RSA; OpenSSH or PEM format), refused if others can read it."""
    path = Path(path)
    try:
        mode = path.stat().st_mode & 0o777
    except FileNotFoundError:
        raise ConfigError(f"no private key at {path}",
                          hint="`provision up --bastion` makes one (pass the --state-dir it used)") from None
    if mode & 0o077:
        # OpenSSH refuses such a key too ("UNPROTECTED PRIVATE KEY FILE"); so do we.
        raise ConfigError(f"the private key {path} has mode {mode:04o}; others can read it", hint=f"chmod 600 {path}")
    try:
        return paramiko.PKey.from_path(str(path))
    except paramiko.PasswordRequiredException:
        raise ConfigError(f"the private key {path} is protected by a passphrase, which provision cannot ask for",
                          hint="use the key `provision up --bastion` made (it has none)") from None
    except (paramiko.SSHException, ValueError, TypeError) as e:
        raise ConfigError(f"{path} is not a readable private key: {e}") from None


# ---------------------------------------------------------------------------------------------- host keys

_file_locks: dict[str, threading.Lock] = {}
_file_locks_guard = threading.Lock()


def _lock_for(path: Path) -> threading.Lock:
    # One lock per file for the whole process: parallel targets remember their keys at the same time.
    with _file_locks_guard:
        return _file_locks.setdefault(os.path.abspath(path), threading.Lock())


class KnownHosts:
    """Host keys by endpoint name in an OpenSSH known_hosts file: remembered on first use, then verified."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._lock = _lock_for(self.path)

    def key_types(self, name: str) -> list[str]:
        """The key types remembered for `name` (to ask the host for one of those first)."""
        with self._lock:
            return [entry.key.get_name() for _, entry in self._entries(name, self._read())]

    def verify(self, endpoint: Endpoint, key: paramiko.PKey) -> None:
        """Accept `key` if it is the one remembered for the endpoint's name, or remember it if none is;
        raise HostKeyChanged (file untouched) if another key is remembered."""
        with self._lock:
            lines = self._read()
            entries = self._entries(endpoint.name, lines)
            if not entries:
                entry = HostKeyEntry([endpoint.name], key)
                self._write(lines + [entry.to_line()])
                return
            if any(entry.key.asbytes() == key.asbytes() for _, entry in entries):
                return
            lineno, known = entries[0]
            raise HostKeyChanged(
                f"the host key of {endpoint.name} ({endpoint.address}) has changed: {self.path}:{lineno} "
                f"remembers {known.key.get_name()} {fingerprint(known.key)}, the host now offers "
                f"{key.get_name()} {fingerprint(key)}; nothing was run. Either the host was rebuilt under "
                "the same name, or something between you and it answers in its place",
                hint=f"if the change is expected (the host was rebuilt under the same name), forget the "
                     f"old key with `ssh-keygen -R {endpoint.name} -f {self.path}` and connect again",
                endpoint=endpoint,
                reason=f"host key changed: {self.path}:{lineno} remembers {fingerprint(known.key)}, "
                       f"offered {fingerprint(key)}; nothing was run")

    def _read(self) -> list[str]:
        try:
            return self.path.read_text().splitlines()
        except FileNotFoundError:
            return []

    @staticmethod
    def _entries(name: str, lines: list[str]) -> list[tuple[int, HostKeyEntry]]:
        found = []
        for lineno, line in enumerate(lines, start=1):
            try:
                entry = HostKeyEntry.from_line(line, lineno)
            except (paramiko.SSHException, ValueError, TypeError):
                entry = None  # a key type paramiko cannot read: kept in the file, never matched
            if entry is not None and entry.key is not None and _names_match(name, entry.hostnames):
                found.append((lineno, entry))
        return found

    def _write(self, lines: list[str]) -> None:
        # Atomic and 0600 from the first byte: a crash never leaves half a file, and a parallel
        # reader sees the old file or the new one.
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(self.path, "".join(line if line.endswith("\n") else line + "\n" for line in lines).encode())


def _names_match(name: str, hostnames: list[str]) -> bool:
    for pattern in hostnames:
        if pattern == name:
            return True
        # `ssh-keygen -H` hashes names: |1|salt|hash
        if pattern.startswith("|1|") and HostKeys.hash_host(name, pattern) == pattern:
            return True
    return False


class _PinnedHostKey(paramiko.MissingHostKeyPolicy):
    """Every host is "missing" to paramiko (we give it no host keys of its own), so each key it is
    offered comes here, to be checked against the entry for the endpoint's name, before authentication."""

    def __init__(self, known_hosts: KnownHosts, endpoint: Endpoint):
        self.known_hosts = known_hosts
        self.endpoint = endpoint

    def missing_host_key(self, client, hostname, key):
        self.known_hosts.verify(self.endpoint, key)


class _Transport(paramiko.Transport):
    """A paramiko Transport that keeps why each channel failed to open.

    paramiko keeps that reason in one slot per transport, taken by whoever asks first: targets opened in
    parallel over the bastion could read each other's reason, or none ("Unable to open channel.").
    """

    def __init__(self, sock, **kwargs):
        super().__init__(sock, **kwargs)
        self._opening = threading.local()   # the channel id this thread is opening
        self._open_failures: dict[int, paramiko.ChannelException] = {}

    def _next_channel(self):
        chanid = super()._next_channel()
        self._opening.chanid = chanid
        return chanid

    def _parse_channel_open_failure(self, m):
        chanid, code = m.get_int(), m.get_int()
        m.rewind()
        self._open_failures[chanid] = paramiko.ChannelException(code, CHANNEL_OPEN_FAILURES.get(code, f"code {code}"))
        super()._parse_channel_open_failure(m)

    def open_direct_tcpip(self, target: Endpoint, timeout: float) -> paramiko.Channel:
        self._opening.chanid = None
        try:
            return self.open_channel("direct-tcpip", (target.host, target.port), ("127.0.0.1", 0), timeout=timeout)
        except paramiko.SSHException:
            failure = self._open_failures.pop(self._opening.chanid, None)
            if failure is not None:
                raise failure from None
            raise


def _transport_factory(preferred: list[str], timeout: float):
    """A Transport that asks for the remembered key type first, as OpenSSH does: a host with several
    host keys (EC2 images have ed25519, ECDSA and RSA) then shows the one we know."""
    def make(sock, **kwargs):
        transport = _Transport(sock, **kwargs)
        transport.handshake_timeout = timeout   # the key exchange, after the banner
        wanted = []
        for name in preferred:
            wanted += ["rsa-sha2-512", "rsa-sha2-256", name] if name == "ssh-rsa" else [name]
        options = transport.get_security_options()
        available = list(options.key_types)
        first = [t for t in wanted if t in available]
        if first:
            options.key_types = first + [t for t in available if t not in first]
        return transport
    return make


# ------------------------------------------------------------------------------------------- connections

def _words(e: BaseException, timeout: float) -> tuple[str, str | None]:
    """(the failure in words, its kind for the hint) for an exception from connecting."""
    if isinstance(e, paramiko.BadAuthenticationType):
        return f"it does not accept keys (it allows: {', '.join(e.allowed_types) or 'nothing'})", "auth"
    if isinstance(e, paramiko.AuthenticationException):
        if "timeout" in str(e).lower():
            return f"no answer to authentication within {timeout:g}s", "timeout"
        return "", "auth"   # the caller says which key and user
    if isinstance(e, ConnectionRefusedError):
        return "connection refused", "refused"
    if isinstance(e, (socket.timeout, TimeoutError)):
        return f"timed out after {timeout:g}s", "timeout"
    if isinstance(e, socket.gaierror):
        return f"cannot resolve the address ({e.strerror})", None
    if isinstance(e, paramiko.SSHException):
        text = str(e)
        if text.startswith("Error reading SSH protocol banner"):
            detail = text[len("Error reading SSH protocol banner"):]
            if not detail or "timed out" in detail.lower():
                return f"no SSH banner within {timeout:g}s (not an SSH server, or overloaded)", "timeout"
            return f"closed the connection before the SSH banner ({detail})", None
        if text.startswith("Indecipherable protocol version"):
            return "does not speak SSH on that port", None
        if text == "No existing session" or "timed out" in text.lower() or "timeout" in text.lower():
            return f"no answer during the SSH handshake within {timeout:g}s", "timeout"
        return f"SSH failed: {text}", None
    if isinstance(e, EOFError):
        return "closed the connection", None
    if isinstance(e, OSError):
        return e.strerror or str(e), None
    return str(e), None


_CONNECT_ERRORS = (paramiko.SSHException, OSError, EOFError)


class Jump:
    """One SSH connection to the bastion; targets are reached through direct-tcpip channels over it."""

    def __init__(self, bastion: Endpoint, key_path: str | os.PathLike, known_hosts_path: str | os.PathLike, *,
                 connect_timeout: float = 10.0):
        self.bastion = bastion
        self.key_path = Path(key_path)
        self.known_hosts = KnownHosts(known_hosts_path)
        self.connect_timeout = connect_timeout
        self._pkey: paramiko.PKey | None = None
        self._client: paramiko.SSHClient | None = None

    def __enter__(self) -> Jump:
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def open(self) -> None:
        """Connect to the bastion; RemoteError (or HostKeyChanged) if that fails."""
        self._pkey = load_private_key(self.key_path)
        self._client = self._ssh(self.bastion, sock=None)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()   # closes every channel over it, so every target connection too
            self._client = None

    def connect(self, target: Endpoint) -> paramiko.SSHClient:
        """An authenticated SSH connection to `target`, through the bastion. Close it when done."""
        transport = self._client.get_transport() if self._client is not None else None
        if transport is None or not transport.is_active():
            raise self._error(target, "the connection to the bastion is closed", None)
        t = self.connect_timeout
        try:
            channel = transport.open_direct_tcpip(target, t)
        except paramiko.ChannelException as e:
            words = CHANNEL_OPEN_FAILURES.get(e.code, e.text or f"code {e.code}")
            kind = "forwarding" if e.code == 1 else "channel"
            raise self._error(target, f"the bastion could not open a connection to it: {words}", kind) from None
        except paramiko.SSHException as e:
            if "Timeout" in str(e):
                raise self._error(target, f"the bastion got no connection to it within {t:g}s", "channel") from None
            raise self._error(target, f"the bastion could not open a connection to it: {e}", "channel") from None
        try:
            return self._ssh(target, sock=channel)
        except BaseException:
            channel.close()
            raise

    def run(self, target: Endpoint, command: str, command_timeout: float | None = None) -> ExecResult:
        """`command` on `target`; every failure is in the result, never raised."""
        started = time.monotonic()
        try:
            client = self.connect(target)
        except RemoteError as e:
            return ExecResult(target, None, "", "", error=e.reason, seconds=time.monotonic() - started, hint=e.hint)
        try:
            status, out, err, error = _exec(client, command, command_timeout, self.connect_timeout)
        except _CONNECT_ERRORS as e:
            status, out, err, error = None, "", "", f"the connection failed while running: {_words(e, 0)[0]}"
        finally:
            client.close()
        return ExecResult(target, status, out, err, error=error, seconds=time.monotonic() - started)

    # -- internals

    def _ssh(self, endpoint: Endpoint, sock) -> paramiko.SSHClient:
        """An authenticated client to `endpoint`, over `sock` (a channel through the bastion) or, for the
        bastion itself, over a TCP connection made here."""
        t = self.connect_timeout
        client = paramiko.SSHClient()
        client.set_log_channel(PARAMIKO_LOG)
        # No system host keys: only our file, by name, through the policy.
        client.set_missing_host_key_policy(_PinnedHostKey(self.known_hosts, endpoint))
        via = sock
        try:
            if sock is None:
                # Our own TCP connect, so that its timeout is apart from the handshake's (SSHClient uses
                # one `timeout` for both, and then reports a slow banner as "No existing session").
                sock = socket.create_connection((endpoint.host, endpoint.port), timeout=t)
            client.connect(endpoint.host, endpoint.port, username=endpoint.user, pkey=self._pkey, sock=sock,
                           timeout=2 * t, banner_timeout=t, auth_timeout=t, channel_timeout=t,
                           allow_agent=False, look_for_keys=False,
                           transport_factory=_transport_factory(self.known_hosts.key_types(endpoint.name), t))
        except HostKeyChanged:
            client.close()
            raise
        except _CONNECT_ERRORS as e:
            transport = client.get_transport()
            # The transport thread's own failure (a banner timeout, say) says more than what it left behind.
            cause = (transport.get_exception() if transport is not None else None) or e
            client.close()
            if sock is not None:
                sock.close()
            words, kind = _words(cause, t)
            if kind == "auth" and not words:
                words = f"refused the key {self.key_path} for user {endpoint.user}"
            raise self._error(endpoint, words, kind, bastion=via is None) from None
        except BaseException:
            client.close()
            raise
        return client

    def _error(self, endpoint: Endpoint, reason: str, kind: str | None, *, bastion: bool = False) -> RemoteError:
        if bastion:
            where = f"the bastion {endpoint.address} ({endpoint.name})"
            message = f"{where} {reason}" if kind == "auth" else f"cannot reach {where}: {reason}"
            return RemoteError(message, _BASTION_HINTS.get(kind), endpoint=endpoint, reason=reason)
        return RemoteError(f"{endpoint.name} ({endpoint.address}) via the bastion: {reason}",
                           _TARGET_HINTS.get(kind), endpoint=endpoint, reason=reason)


# ------------------------------------------------------------------------------------------------ running

def _exec(client: paramiko.SSHClient, command: str, command_timeout: float | None,
          open_timeout: float) -> tuple[int | None, str, str, str | None]:
    channel = client.get_transport().open_session(timeout=open_timeout)
    try:
        channel.exec_command(command)
        out, err = bytearray(), bytearray()
        deadline = None if command_timeout is None else time.monotonic() + command_timeout
        # Both streams are read as they come: a command filling its stderr while we wait on stdout
        # would otherwise stall on a full SSH window.
        while True:
            finished = _finished(channel)
            while channel.recv_ready():
                out += channel.recv(65536)
            while channel.recv_stderr_ready():
                err += channel.recv_stderr(65536)
            if finished:
                break
            wait = 1.0 if deadline is None else deadline - time.monotonic()
            if wait <= 0:
                _signal(channel, "TERM")
                return None, _text(out), _text(err), (f"no answer after {command_timeout:g} s (the command "
                                                      "timeout); asked sshd to stop it (SIGTERM), closed the channel")
            select.select([channel], [], [], min(wait, 1.0))
        status = channel.recv_exit_status()
        if status == -1:
            return None, _text(out), _text(err), "it ended without an exit status (killed by a signal?)"
        return status, _text(out), _text(err), None
    finally:
        channel.close()


def _finished(channel: paramiko.Channel) -> bool:
    """Whether all of the command's output is buffered here and its status (if any) known. sshd sends
    the exit status when the command exits, which can be before the last of its output (still in the
    pipe); the end of the output is the channel's EOF. paramiko handles packets in order, so once
    this is true, one more drain gets everything."""
    return channel.closed or (channel.eof_received and channel.exit_status_ready())


def _signal(channel: paramiko.Channel, name: str) -> None:
    """Ask sshd to send the command a signal (RFC 4254 6.9), so a timed-out command does not run on
    after we stop waiting. OpenSSH honours it for ordinary users (the instances' `ubuntu`); for a root
    login it only logs a refusal, and the command runs to its end."""
    message = paramiko.Message()
    message.add_byte(paramiko.common.cMSG_CHANNEL_REQUEST)
    message.add_int(channel.remote_chanid)
    message.add_string("signal")
    message.add_boolean(False)
    message.add_string(name)
    try:
        channel.transport._send_user_message(message)
    except (paramiko.SSHException, OSError, EOFError):
        pass


def _text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def run_commands(bastion: Endpoint, targets: list[Endpoint], command: str, key_path: str | os.PathLike,
                 known_hosts_path: str | os.PathLike, *, connect_timeout: float = 10.0,
                 command_timeout: float | None = None, parallel: int = 8,
                 on_result: Callable[[ExecResult], None] | None = None) -> list[ExecResult]:
    """`command` on every target, in parallel, over one connection to the bastion; results in the
    order of `targets`, and `on_result` called (in this thread) as each one finishes. A target's
    failure is in its result; a failure to reach the bastion raises RemoteError."""
    results: list[ExecResult | None] = [None] * len(targets)
    with Jump(bastion, key_path, known_hosts_path, connect_timeout=connect_timeout) as jump:
        if not targets:
            return []
        pool = ThreadPoolExecutor(max_workers=max(1, min(parallel, len(targets))), thread_name_prefix="ssh")
        try:
            index = {pool.submit(jump.run, target, command, command_timeout): i for i, target in enumerate(targets)}
            for future in as_completed(index):
                result = future.result()
                results[index[future]] = result
                if on_result is not None:
                    on_result(result)
        finally:
            # On Ctrl-C: drop what has not started; closing the bastion (leaving `with`) ends the rest.
            pool.shutdown(wait=False, cancel_futures=True)
    return results  # type: ignore[return-value]


# ---------------------------------------------------------------------------------------------- the shell

def interactive_shell(bastion: Endpoint, target: Endpoint, key_path: str | os.PathLike,
                      known_hosts_path: str | os.PathLike, *, connect_timeout: float = 10.0,
                      stdin=None, stdout=None) -> int:
    """A shell on `target` through the bastion; returns its exit status (255 if it ended without one,
    as ssh does). On a terminal: a pty of the terminal's size, the terminal in raw mode meanwhile and
    restored whatever happens. Otherwise (a pipe, a file): no pty, stdin is fed to the shell."""
    stdin = sys.stdin if stdin is None else stdin
    stdout = sys.stdout if stdout is None else stdout
    with Jump(bastion, key_path, known_hosts_path, connect_timeout=connect_timeout) as jump:
        client = jump.connect(target)
        try:
            channel = client.get_transport().open_session(timeout=connect_timeout)
            if _isatty(stdin):
                _tty_session(channel, stdin.fileno(), stdout)
            else:
                _pipe_session(channel, stdin, stdout)
            status = channel.recv_exit_status()
        finally:
            client.close()
    return 255 if status == -1 else status


def _isatty(stream) -> bool:
    try:
        return os.isatty(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return False   # io.BytesIO and friends have no descriptor


def _writer(stream) -> Callable[[bytes], None]:
    binary = getattr(stream, "buffer", stream)

    def write(data: bytes) -> None:
        try:
            binary.write(data)
        except TypeError:   # a text stream without a binary buffer (io.StringIO)
            binary.write(_text(data))
        binary.flush()
    return write


def _pipe_session(channel: paramiko.Channel, stdin, stdout) -> None:
    channel.invoke_shell()
    source = getattr(stdin, "buffer", stdin)

    def feed() -> None:
        try:
            while True:
                data = source.read1(65536) if hasattr(source, "read1") else source.read(65536)
                if not data:
                    break
                channel.sendall(data.encode() if isinstance(data, str) else data)
        except (OSError, EOFError, ValueError):
            pass   # the shell is gone, or stdin was closed under us
        finally:
            try:
                channel.shutdown_write()   # EOF: a shell reading a script ends there
            except (OSError, EOFError):
                pass

    # A daemon thread: reading stdin may block after the remote shell has exited.
    threading.Thread(target=feed, name="ssh-stdin", daemon=True).start()
    write_out, write_err = _writer(stdout), _writer(sys.stderr)
    while True:
        finished = _finished(channel)
        while channel.recv_ready():
            write_out(channel.recv(65536))
        while channel.recv_stderr_ready():
            write_err(channel.recv_stderr(65536))
        if finished:
            return
        select.select([channel], [], [], 1.0)


def _tty_session(channel: paramiko.Channel, fd: int, stdout) -> None:
    import signal
    import termios
    import tty

    size = os.get_terminal_size(fd)
    channel.get_pty(term=os.environ.get("TERM", "xterm"), width=size.columns, height=size.lines)
    channel.invoke_shell()
    write_out = _writer(stdout)
    saved = termios.tcgetattr(fd)
    watching_size = threading.current_thread() is threading.main_thread()   # signals go to the main thread
    if watching_size:
        def resized(signum, frame):
            new = os.get_terminal_size(fd)
            channel.resize_pty(width=new.columns, height=new.lines)
        previous_winch = signal.signal(signal.SIGWINCH, resized)
    try:
        tty.setraw(fd, termios.TCSADRAIN)   # as ssh does: TCSAFLUSH would drop what was typed ahead
        watched = [channel, fd]
        while True:
            try:
                readable, _, _ = select.select(watched, [], [])
            except InterruptedError:
                continue   # SIGWINCH
            if channel in readable:
                data = channel.recv(65536)
                if not data:
                    return
                write_out(data)
            if fd in readable:
                data = os.read(fd, 4096)
                if data:
                    channel.sendall(data)
                else:   # the terminal went away: pass the EOF on, keep showing what the shell prints
                    channel.shutdown_write()
                    watched = [channel]
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
        if watching_size:
            signal.signal(signal.SIGWINCH, previous_winch)
