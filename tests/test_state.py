"""The state file and the lock, at unit level: JSON with a schema version, account and region;
written atomically with the previous version kept as a backup; refused (and left untouched) when
it belongs to another account or region, or is corrupt; a lock that two runs cannot both hold,
whose stale copy (a dead process on this host) is taken over with a warning."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time

import pytest

from provisioner.engine import state as state_mod
from provisioner.engine.errors import EXIT_USAGE, StateError
from provisioner.engine.state import SCHEMA_VERSION, StackState, StateFile

ACCOUNT = "123456789012"
REGION = "us-east-1"


@pytest.fixture
def sf(tmp_path):
    return StateFile(tmp_path / "state", "lab")


def make_state(**kwargs) -> StackState:
    fields = dict(stack="lab", account=ACCOUNT, region=REGION, config={"vpc_cidr": "10.0.0.0/16"},
                  resources={"vpc": {"id": "vpc-1", "attrs": {"cidr": "10.0.0.0/16"}}},
                  outputs={"vpc_id": "vpc-1"})
    fields.update(kwargs)
    return StackState(**fields)


def snapshot(path):
    """Bytes and mtime: 'left untouched' means both."""
    return path.read_bytes(), path.stat().st_mtime_ns


def leftovers(directory):
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def write_lock(sf: StateFile, **holder):
    sf.dir.mkdir(parents=True, exist_ok=True)
    data = {"pid": os.getpid(), "host": socket.gethostname(), "since": "2024-01-01T00:00:00Z"}
    data.update(holder)
    sf.lock_path.write_text(json.dumps(data))
    return sf.lock_path.read_bytes()


# -- the file ----------------------------------------------------------------------------------

def test_read_without_a_file_is_none_and_creates_nothing(sf):
    assert sf.read() is None
    assert sf.load_for(ACCOUNT, REGION) is None
    assert not sf.exists()
    assert not sf.dir.exists()


def test_save_writes_json_with_schema_version_account_and_region(sf):
    sf.save(make_state())
    data = json.loads(sf.path.read_text())
    assert data["schema_version"] == SCHEMA_VERSION
    assert data["account"] == ACCOUNT
    assert data["region"] == REGION
    assert data["stack"] == "lab"
    assert data["resources"]["vpc"]["id"] == "vpc-1"
    assert data["outputs"] == {"vpc_id": "vpc-1"}
    assert data["generation"] and data["updated_at"]


def test_save_then_read_round_trips(sf):
    original = make_state()
    sf.save(original)
    loaded = sf.load_for(ACCOUNT, REGION)
    assert loaded == original


def test_save_is_atomic_and_keeps_the_previous_version_as_backup(sf):
    sf.save(make_state())
    first = sf.path.read_bytes()
    assert not sf.backup.exists()  # nothing to back up on the first write

    # The next run's first save backs up the state as that run found it; its later saves (one
    # per step) keep that backup rather than copying the file again every time.
    next_run = StateFile(sf.dir, sf.stack)
    next_run.save(make_state(resources={"vpc": {"id": "vpc-2", "attrs": {}}}))
    assert next_run.backup.read_bytes() == first
    next_run.save(make_state(resources={"vpc": {"id": "vpc-3", "attrs": {}}}))
    assert next_run.backup.read_bytes() == first
    sf = next_run
    assert json.loads(sf.path.read_text())["resources"]["vpc"]["id"] == "vpc-3"
    assert leftovers(sf.dir) == []
    assert sorted(p.name for p in sf.dir.iterdir()) == ["lab.json", "lab.json.bak"]


def test_a_failed_write_leaves_the_old_file_whole_and_no_temp_file(sf, monkeypatch):
    sf.save(make_state())
    before = sf.path.read_bytes()

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(state_mod.os, "replace", broken_replace)
    with pytest.raises(OSError):
        sf.save(make_state(resources={}))
    assert sf.path.read_bytes() == before
    assert leftovers(sf.dir) == []


def test_save_writes_through_a_temp_file_and_rename(sf, monkeypatch):
    """The target is only ever replaced by os.replace of a complete temp file in the same dir."""
    sf.save(make_state())
    calls = []
    real_replace = os.replace

    def spy(src, dst):
        calls.append((os.path.dirname(src), os.path.basename(src), str(dst)))
        assert json.loads(open(src).read())  # complete before the rename
        real_replace(src, dst)

    monkeypatch.setattr(state_mod.os, "replace", spy)
    next_run = StateFile(sf.dir, sf.stack)
    next_run.save(make_state())
    targets = [dst for _, _, dst in calls]
    assert targets == [str(sf.backup), str(sf.path)]
    assert all(d == str(sf.dir) and name.endswith(".tmp") for d, name, _ in calls)


def test_remove_deletes_file_and_backup(sf):
    sf.save(make_state())
    sf.save(make_state())
    sf.remove()
    assert not sf.path.exists() and not sf.backup.exists()
    sf.remove()  # twice is fine


@pytest.mark.parametrize("account, region", [("999999999999", REGION), (ACCOUNT, "eu-west-1")])
def test_load_for_refuses_another_account_or_region_and_leaves_the_file(sf, account, region):
    sf.save(make_state())
    before = snapshot(sf.path)
    with pytest.raises(StateError) as info:
        sf.load_for(account, region)
    err = info.value
    assert err.exit_code == EXIT_USAGE
    assert f"belongs to account {ACCOUNT} in {REGION}" in err.message
    assert f"this run is for account {account} in {region}" in err.message
    assert "--region" in err.hint and "--state-dir" in err.hint
    assert snapshot(sf.path) == before
    assert not sf.backup.exists()


@pytest.mark.parametrize("text", ["{not json", "", "\x00\x01garbage"])
def test_corrupt_file_is_refused_with_a_hint_about_the_backup(sf, text):
    sf.dir.mkdir(parents=True)
    sf.path.write_text(text)
    before = snapshot(sf.path)
    with pytest.raises(StateError) as info:
        sf.read()
    assert "is corrupt" in info.value.message
    assert str(sf.backup) in info.value.hint
    assert "provision down" in info.value.hint
    assert snapshot(sf.path) == before


@pytest.mark.parametrize("data, words", [
    ([1, 2, 3], "is not a provision state file"),
    ({"schema_version": 1, "stack": "lab"}, "is not a provision state file"),
    ({"schema_version": 1, "stack": "lab", "account": ACCOUNT, "resources": {}}, "lacks the field 'region'"),
    ({"schema_version": 99, "stack": "lab", "account": ACCOUNT, "region": REGION, "resources": {}},
     "schema version 99"),
    ({"stack": "lab", "account": ACCOUNT, "region": REGION, "resources": {}}, "schema version None"),
    ({"schema_version": 1, "stack": "other", "account": ACCOUNT, "region": REGION, "resources": {}},
     "is for stack 'other'"),
])
def test_files_that_are_not_ours_are_refused_untouched(sf, data, words):
    sf.dir.mkdir(parents=True)
    sf.path.write_text(json.dumps(data))
    before = snapshot(sf.path)
    with pytest.raises(StateError) as info:
        sf.read()
    assert words in info.value.message
    assert info.value.hint
    assert snapshot(sf.path) == before


def test_an_unreadable_path_is_a_state_error(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    with pytest.raises(StateError, match="cannot read state file"):
        StateFile(blocker / "state", "lab").read()


# -- the lock ----------------------------------------------------------------------------------

def test_lock_records_its_holder_and_is_released(sf):
    with sf.lock():
        holder = json.loads(sf.lock_path.read_text())
        assert holder["pid"] == os.getpid()
        assert holder["host"] == socket.gethostname()
        assert holder["since"]
    assert not sf.lock_path.exists()


def test_lock_is_released_when_the_body_fails(sf):
    with pytest.raises(RuntimeError):
        with sf.lock():
            raise RuntimeError("boom")
    assert not sf.lock_path.exists()


def test_lock_excludes_a_second_holder(sf):
    other = StateFile(sf.dir, "lab")
    with sf.lock():
        before = sf.lock_path.read_bytes()
        with pytest.raises(StateError) as info:
            with other.lock():
                pytest.fail("two holders of one lock")
        assert "is locked by another provision run" in info.value.message
        assert f"pid {os.getpid()}" in info.value.message
        assert str(sf.lock_path) in info.value.hint
        assert info.value.exit_code == EXIT_USAGE
        assert sf.lock_path.read_bytes() == before  # the holder keeps its lock
    assert not sf.lock_path.exists()


def test_lock_held_by_another_live_process_is_refused(sf):
    proc = subprocess.Popen(["sleep", "30"])
    try:
        before = write_lock(sf, pid=proc.pid)
        warnings = []
        with pytest.raises(StateError, match="is locked by another provision run"):
            with sf.lock(warn=warnings.append):
                pass
        assert warnings == []
        assert sf.lock_path.read_bytes() == before
    finally:
        proc.kill()
        proc.wait()


def test_stale_lock_of_a_dead_process_is_taken_over_with_a_warning(sf):
    pid = dead_pid()
    write_lock(sf, pid=pid)
    warnings = []
    with sf.lock(warn=warnings.append):
        assert json.loads(sf.lock_path.read_text())["pid"] == os.getpid()
    assert len(warnings) == 1
    assert "stale lock" in warnings[0] and str(pid) in warnings[0]
    assert not sf.lock_path.exists()


def test_lock_from_another_host_is_refused_even_if_the_pid_is_dead_here(sf):
    before = write_lock(sf, pid=dead_pid(), host="some-other-host.example")
    warnings = []
    with pytest.raises(StateError) as info:
        with sf.lock(warn=warnings.append):
            pass
    assert "some-other-host.example" in info.value.message
    assert warnings == []
    assert sf.lock_path.read_bytes() == before


def test_a_lock_file_being_written_right_now_is_not_taken_over(sf):
    """Another run has created the lock but not yet written its pid: refuse, do not steal it."""
    sf.dir.mkdir(parents=True)
    sf.lock_path.write_text("")
    warnings = []
    with pytest.raises(StateError, match="is being locked by another provision run"):
        with sf.lock(warn=warnings.append):
            pass
    assert warnings == []
    assert sf.lock_path.exists()


def test_an_old_unreadable_lock_is_taken_over_with_a_warning(sf):
    sf.dir.mkdir(parents=True)
    sf.lock_path.write_text("{garbage")
    old = time.time() - 3600
    os.utime(sf.lock_path, (old, old))
    warnings = []
    with sf.lock(warn=warnings.append):
        assert json.loads(sf.lock_path.read_text())["pid"] == os.getpid()
    assert len(warnings) == 1 and "stale lock" in warnings[0]


def test_locks_of_different_stacks_are_independent(sf):
    other = StateFile(sf.dir, "lab-2")
    with sf.lock(), other.lock():
        assert sf.lock_path.exists() and other.lock_path.exists()


def test_a_state_directory_made_meanwhile_by_another_run_is_accepted(tmp_path, monkeypatch):
    """A fleet's stacks check the shared directory at once: one of them may create it between
    another's "is it a directory?" and "does something exist there?"."""
    from pathlib import Path

    from provisioner.engine.state import check_state_dir

    target = tmp_path / "state"
    real_exists = Path.exists

    def exists(self, *args, **kwargs):
        if self == target and not target.is_dir():
            target.mkdir()   # the other run, just now
        return real_exists(self, *args, **kwargs)

    monkeypatch.setattr(Path, "exists", exists)
    check_state_dir(target)
    assert target.is_dir()
