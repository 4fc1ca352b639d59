"""The built-in emulator: moto in server mode on loopback, started on first use and kept running
until `provision sandbox stop`, so that separate invocations see the same resources."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

from provisioner.engine.errors import ConfigError

HOST = "127.0.0.1"
# Dummy credentials: the emulator accepts any, and real ones must never reach it.
CREDENTIALS = {"aws_access_key_id": "sandbox", "aws_secret_access_key": "sandbox"}
# Waits in the emulator end almost at once; poll often so commands finish quickly.
POLL_INTERVAL = 0.2


def home() -> Path:
    base = os.environ.get("PROVISION_SANDBOX_DIR") or os.path.join(
        os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state"), "provision", "sandbox")
    return Path(base)


def _info_path() -> Path:
    return home() / "sandbox.json"


def _read_info() -> dict | None:
    try:
        return json.loads(_info_path().read_text())
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _answers(endpoint: str) -> bool:
    try:
        with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1):
            return True
    except OSError:
        return False


def status() -> dict | None:
    """{"pid", "endpoint", "log"} of a running sandbox, or None."""
    info = _read_info()
    if info and _alive(info.get("pid", -1)) and _answers(info["endpoint"]):
        return info
    return None


@contextlib.contextmanager
def _start_lock():
    import fcntl

    home().mkdir(parents=True, exist_ok=True)
    with open(home() / "start.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # two commands starting it at once get one server
        yield


def emulation() -> str:
    """What the sandbox's behaviour comes from: the tool's and moto's versions and the emulator's
    own patches. A server started by another (an upgrade since) emulates differently."""
    import hashlib
    from importlib.metadata import PackageNotFoundError, version

    from provisioner import __version__
    from provisioner.sandbox import emulator

    try:
        moto_version = version("moto")
    except PackageNotFoundError:
        moto_version = "?"
    digest = hashlib.sha256(Path(emulator.__file__).read_bytes()).hexdigest()[:12]
    return f"provision {__version__}, moto {moto_version}, emulator {digest}"


def stale_warning(info: dict) -> str | None:
    """What to say when the running server emulates otherwise than this installation would."""
    started_by = info.get("emulation")
    if started_by == emulation():
        return None
    return (f"warning: the sandbox server was started by {started_by or 'an older provision'}, this is "
            f"{emulation()}: what it emulates may differ (a wait that never ends). `provision sandbox stop` "
            "restarts it with this version; the stacks in it are lost.")


def ensure_running(timeout: float = 30.0) -> str:
    """The endpoint of the running sandbox, starting it first if needed."""
    with _start_lock():
        info = status()
        if info:
            warning = stale_warning(info)
            if warning:
                print(warning, file=sys.stderr)
            return info["endpoint"]
        try:
            import moto.server  # noqa: F401
        except ImportError as e:
            raise ConfigError(f"the sandbox needs moto's server mode ({e})",
                              hint="pip install 'moto[server]'") from None
        with socket.socket() as s:
            s.bind((HOST, 0))
            port = s.getsockname()[1]
        endpoint = f"http://{HOST}:{port}"
        log = home() / "server.log"
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "provisioner.sandbox.server", "-H", HOST, "-p", str(port)],
                stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True)
        _wait_until_up(proc, endpoint, timeout, log)
        _info_path().write_text(json.dumps({"pid": proc.pid, "endpoint": endpoint, "log": str(log),
                                            "emulation": emulation()}))
        return endpoint


def _wait_until_up(proc: subprocess.Popen, endpoint: str, timeout: float, log: Path) -> None:
    import tenacity

    def check():
        if proc.poll() is not None:
            raise ConfigError(f"the sandbox server exited at start (code {proc.returncode})",
                              hint=f"see {log}")
        if not _answers(endpoint):
            raise TimeoutError(endpoint)

    try:
        tenacity.Retrying(retry=tenacity.retry_if_exception_type(TimeoutError),
                          wait=tenacity.wait_fixed(0.1), stop=tenacity.stop_after_delay(timeout),
                          reraise=True)(check)
    except TimeoutError:
        proc.kill()
        raise ConfigError(f"the sandbox server did not answer within {timeout:.0f}s", hint=f"see {log}") from None


def stop() -> bool:
    """Stop the sandbox; False if none was running. Its resources are gone with it."""
    info = _read_info()
    _info_path().unlink(missing_ok=True)
    if not info or not _alive(info.get("pid", -1)):
        return False
    with contextlib.suppress(ProcessLookupError):
        os.killpg(info["pid"], signal.SIGTERM)
    return True
