"""The local state file: what a stack's steps created, written atomically after every step.

Layout: ``<state-dir>/<stack>.json`` (the current state), ``<stack>.json.bak`` (the version
before the last write) and ``<stack>.lock`` (held while a run may write). State is a cache of
what the tags in AWS also say; losing it is recoverable (`down` and `up` find resources by tags).
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from provisioner.engine.errors import ConfigError, StateError

SCHEMA_VERSION = 1
# A lock file is created first and written a moment later: one that cannot be read yet is
# another run taking the lock, unless it has stayed unreadable this long (a crash in between).
UNREADABLE_LOCK_GRACE = 10.0


def utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def write_atomic(target: Path, data: bytes) -> None:
    """A reader sees the old file or the new one, never half: written beside it, then renamed.
    The file is readable by its owner only (mode 0600) from its first byte, whatever the umask:
    mkstemp makes it so, and the rename keeps it (state files, private keys, known hosts)."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


STATE_DIR_HINT = ("pass --state-dir (or PROVISION_STATE_DIR) a directory this user can write; it holds the "
                  "stack's state file, its lock and its SSH key")


def check_state_dir(directory: Path) -> None:
    """Refuse, before any AWS call, a state directory the run could not write its state, lock
    or key into: one that is a file, lies under a file, or cannot be written (a read-only mount,
    another user's directory). Creates nothing: `status` of a stack never built leaves no
    directory behind. Writing is tried, not asked of os.access, which answers yes to root even
    where the kernel then refuses (/proc, /sys)."""
    existing = directory
    while not existing.is_dir():
        if existing.exists() or existing.is_symlink():
            if existing.is_dir():
                break   # made meanwhile by another run (a fleet's stacks share the directory)
            what = "a file" if existing.is_file() else "not a directory"
            if existing == directory:
                raise ConfigError(f"the state directory {directory} is {what}", hint=STATE_DIR_HINT)
            raise ConfigError(f"the state directory {directory} cannot be created: {existing} is {what}",
                              hint=STATE_DIR_HINT)
        if existing.parent == existing:
            break
        existing = existing.parent
    try:
        # A directory, not a file: it proves what making the state directory itself needs too.
        os.rmdir(tempfile.mkdtemp(dir=existing, prefix=".provision-probe-"))
    except OSError as e:
        where = "is not writable" if existing == directory else f"cannot be created in {existing}"
        raise ConfigError(f"the state directory {directory} {where}: {e.strerror}", hint=STATE_DIR_HINT) from None


def make_state_dir(directory: Path) -> None:
    """Create the state directory with mode 0700, whatever the umask: it holds the stacks' SSH
    private keys, and their names and state should not be listed by others either. One that
    exists is left as it is: it may be the user's own (`--state-dir .`)."""
    if directory.is_dir():
        return
    directory.parent.mkdir(parents=True, exist_ok=True)
    try:
        directory.mkdir(mode=0o700)
    except FileExistsError:  # made meanwhile by another run (a fleet's stacks share the directory)
        pass


@dataclass
class StackState:
    stack: str
    account: str
    region: str
    # Set when the stack is first created; part of the ClientTokens, so that a stack built again
    # after `down` (even within the same second) does not replay the tokens of the deleted one.
    generation: str = field(default_factory=lambda: f"{utc_now()}-{secrets.token_hex(4)}")
    config: dict = field(default_factory=dict)
    resources: dict[str, dict] = field(default_factory=dict)
    outputs: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {
            "schema_version": SCHEMA_VERSION,
            "stack": self.stack,
            "account": self.account,
            "region": self.region,
            "generation": self.generation,
            "updated_at": utc_now(),
            "config": self.config,
            "resources": self.resources,
            "outputs": self.outputs,
        }


class StateFile:
    def __init__(self, state_dir: str | os.PathLike, stack: str):
        self.dir = Path(state_dir)
        self.stack = stack
        self.path = self.dir / f"{stack}.json"
        self.backup = self.dir / f"{stack}.json.bak"
        self.lock_path = self.dir / f"{stack}.lock"
        self._backed_up = False

    def exists(self) -> bool:
        return self.path.exists()

    def check_dir(self) -> None:
        check_state_dir(self.dir)

    def read(self) -> StackState | None:
        """The state as saved, or None if there is none. Corrupt files raise StateError."""
        try:
            raw = self.path.read_text()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise StateError(f"cannot read state file {self.path}: {e.strerror}") from None
        hint = (f"move it aside (a backup of the previous version may be at {self.backup}); "
                "`provision down` finds the stack's resources by their tags without it")
        try:
            data = json.loads(raw)
        except ValueError as e:
            raise StateError(f"state file {self.path} is corrupt: {e}", hint=hint) from None
        if not isinstance(data, dict) or not isinstance(data.get("resources"), dict):
            raise StateError(f"state file {self.path} is not a provision state file", hint=hint)
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise StateError(
                f"state file {self.path} has schema version {version!r}; this provision reads "
                f"version {SCHEMA_VERSION}", hint="use the provision release that wrote it")
        if data.get("stack") != self.stack:
            raise StateError(f"state file {self.path} is for stack {data.get('stack')!r}, not {self.stack!r}",
                             hint=hint)
        try:
            return StackState(stack=data["stack"], account=str(data["account"]), region=data["region"],
                              generation=data.get("generation") or utc_now(), config=data.get("config") or {},
                              resources=data["resources"], outputs=data.get("outputs") or {})
        except KeyError as e:
            raise StateError(f"state file {self.path} lacks the field {e}", hint=hint) from None

    def load_for(self, account: str, region: str) -> StackState | None:
        """The state, refusing one that belongs to another account or region (left untouched)."""
        state = self.read()
        if state is None:
            return None
        if state.account != account or state.region != region:
            raise StateError(
                f"state file {self.path} belongs to account {state.account} in {state.region}, "
                f"but this run is for account {account} in {region}",
                hint="check --profile/--region (or --sandbox), or use another --state-dir")
        return state

    def save(self, state: StackState) -> None:
        """Atomic: the new version is written to a temporary file and renamed over the old one,
        so a crash leaves one complete file. The first save of a run first copies the file as it
        was before the run to the backup."""
        make_state_dir(self.dir)
        text = json.dumps(state.to_json(), indent=2, sort_keys=True) + "\n"
        if not self._backed_up and self.path.exists():
            self._write_atomic(self.backup, self.path.read_bytes())
        self._backed_up = True
        self._write_atomic(self.path, text.encode())

    def remove(self) -> None:
        for p in (self.path, self.backup):
            p.unlink(missing_ok=True)

    def _write_atomic(self, target: Path, data: bytes) -> None:
        write_atomic(target, data)

    @contextmanager
    def lock(self, warn=lambda message: None):
        """Hold the stack's lock. A lock left by a dead process on this host is taken over with a
        warning; a live one (or one from another host, which we cannot check) is refused."""
        make_state_dir(self.dir)
        me = {"pid": os.getpid(), "host": socket.gethostname(), "since": utc_now()}
        for _ in range(2):
            try:
                fd = os.open(self.lock_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._lock_holder()
                hint = f"wait for it to finish; if that run is gone for good, delete {self.lock_path}"
                if holder is None and self._lock_is_young():
                    raise StateError(f"stack {self.stack!r} is being locked by another provision run",
                                     hint=hint) from None
                if holder is not None and not _is_stale(holder):
                    raise StateError(
                        f"stack {self.stack!r} is locked by another provision run "
                        f"(pid {holder.get('pid')} on {holder.get('host')}, since {holder.get('since')})",
                        hint=hint) from None
                warn(f"taking over a stale lock on stack {self.stack!r} "
                     f"(left by pid {holder.get('pid') if holder else '?'}, which is no longer running)")
                self.lock_path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            break
        else:  # pragma: no cover - another process took the stale lock between our two tries
            raise StateError(f"stack {self.stack!r} is locked by another provision run")
        try:
            yield
        finally:
            self.lock_path.unlink(missing_ok=True)

    def _lock_is_young(self) -> bool:
        try:
            return lock_age_seconds(self.lock_path) < UNREADABLE_LOCK_GRACE
        except FileNotFoundError:  # released meanwhile: the next try takes it
            return False

    def _lock_holder(self) -> dict | None:
        try:
            data = json.loads(self.lock_path.read_text())
            return data if isinstance(data, dict) else None
        except (OSError, ValueError):
            return None


def _is_stale(holder: dict) -> bool:
    if holder.get("host") != socket.gethostname():
        return False
    pid = holder.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def lock_age_seconds(path: Path) -> float:
    return time.time() - path.stat().st_mtime
