"""Run the rendered bootstrap under bash with stub commands (apt-get, docker,
curl, systemctl, swap tools, git): order of operations, markers, failure
handling and re-runs. Every path it writes is redirected under a temp root."""

from __future__ import annotations

import hashlib
import io
import os
import re
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest

from userdata import FAILURE_MARKER, STEPS, SUCCESS_MARKER, render_bootstrap

HERE = Path(__file__).resolve().parent
STUBBED = ("apt-get", "docker", "curl", "systemctl", "swapon", "mkswap", "fallocate", "sleep", "git")
IMAGES = "https://stylesphere-assets-1.s3.eu-west-1.amazonaws.com/images/"
SECRETS = ("ASIASTUBKEYID", "stub/secret+KEY", "stub-session-token==")


def _release_tarball() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, text in {
            "docker-compose.yml": "services:\n  backend: {}\n  frontend: {}\n",
            "backend/Dockerfile": "FROM python:3.12-slim\n",
            "frontend/Dockerfile": "FROM node:20-alpine\n",
            "images/tee.svg": "<svg xmlns='http://www.w3.org/2000/svg'/>",
        }.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


class Machine:
    """A fake instance: temp root, stub bin dir, console and call log."""

    def __init__(self, base: Path, *, app_source=None, release_key=None, tarball=None):
        self.base = base
        self.root = base / "root"
        self.bin = base / "bin"
        self.state = base / "state"
        for d in (self.root, self.bin, self.state):
            d.mkdir(parents=True, exist_ok=True)
        (self.root / "etc").mkdir(exist_ok=True)
        (self.root / "etc" / "fstab").write_text("LABEL=cloudimg-rootfs / ext4 discard,errors=remount-ro 0 1\n")
        tarball = tarball if tarball is not None else _release_tarball()
        self.release = base / "release.tar.gz"
        self.release.write_bytes(tarball)
        sha = hashlib.sha256(tarball).hexdigest()
        self.release_key = release_key or f"releases/{sha}.tar.gz"
        stub = self.bin / "_stubs.sh"
        if not stub.exists():
            stub.write_text((HERE / "stubs.sh").read_text())
            stub.chmod(stub.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        for name in STUBBED:
            link = self.bin / name
            if not link.exists():
                link.symlink_to(stub)
        self.script = base / "bootstrap.sh"
        self.script.write_text(render_bootstrap(
            region="eu-west-1", release_bucket="stylesphere-assets-1", release_key=self.release_key,
            images_base_url=IMAGES, app_source=app_source))
        self.runs = 0

    def run(self, fail: str | None = None):
        self.runs += 1
        self.console = self.base / f"console-{self.runs}.txt"
        self.calls_file = self.base / f"calls-{self.runs}.txt"
        env = {
            "PATH": f"{self.bin}:{os.environ['PATH']}",
            "HOME": str(self.base),
            "LANG": "C.UTF-8",
            "PROVISION_BOOTSTRAP_ROOT": str(self.root),
            "PROVISION_BOOTSTRAP_CONSOLE": str(self.console),
            "STUB_LOG": str(self.calls_file),
            "STUB_STATE": str(self.state),
            "STUB_RELEASE": str(self.release),
        }
        if fail:
            env["STUB_FAIL"] = fail
        proc = subprocess.run(["bash", str(self.script)], env=env, capture_output=True, text=True,
                              timeout=60)
        self.rc = proc.returncode
        self.stdout = proc.stdout
        self.console_lines = self.console.read_text().splitlines() if self.console.exists() else []
        self.calls = self.calls_file.read_text().splitlines() if self.calls_file.exists() else []
        return self

    @property
    def log(self) -> str:
        return (self.root / "var/log/provision-bootstrap.log").read_text()

    @property
    def app_dir(self) -> Path:
        return self.root / "opt/stylesphere/app"

    def markers(self):
        return [l for l in self.console_lines if re.search(r"PROVISION-BOOTSTRAP-(OK|FAILED)", l)]

    def index(self, pattern: str) -> int:
        for i, call in enumerate(self.calls):
            if re.search(pattern, call):
                return i
        raise AssertionError(f"no call matches {pattern!r}:\n" + "\n".join(self.calls))

    def called(self, pattern: str) -> bool:
        return any(re.search(pattern, c) for c in self.calls)


@pytest.fixture()
def machine(tmp_path):
    return Machine(tmp_path)


def test_first_boot_succeeds_in_order(machine):
    m = machine.run()
    assert m.rc == 0, m.console_lines
    assert m.markers() == [SUCCESS_MARKER]
    assert m.console_lines[-1] == SUCCESS_MARKER
    assert m.stdout == ""  # everything goes to the console device and the log

    # Progress lines for every step, in order, each begun and done.
    begun = [re.match(r"provision-bootstrap: step=(\w+) begin", l) for l in m.console_lines]
    assert [b.group(1) for b in begun if b] == ["init", *STEPS]
    for step in STEPS:
        assert any(l.startswith(f"provision-bootstrap: step={step} done in ") for l in m.console_lines), step

    order = [
        m.index(r"^fallocate "),
        m.index(r"^swapon .*/swapfile$"),
        m.index(r"^apt-get .*install .*docker\.io .*docker-compose-v2"),
        m.index(r"^systemctl enable --now docker"),
        m.index(r"^curl .*-X PUT .*latest/api/token"),
        m.index(r"^curl .*--aws-sigv4 aws:amz:eu-west-1:s3 .*https://stylesphere-assets-1\.s3\.eu-west-1\.amazonaws\.com/releases/"),
        m.index(r"^docker compose .* build backend"),
        m.index(r"^docker compose .* build frontend"),
        m.index(r"^docker compose .* up --build -d"),
        m.index(r"^curl .*http://127\.0\.0\.1:5000/api/health"),
        m.index(r"^curl .*http://127\.0\.0\.1:3000/healthz"),
    ]
    assert order == sorted(order), "\n".join(m.calls)
    # The credentials request runs in the same pipeline as the S3 download.
    assert m.called(r"^curl .*-H X-aws-ec2-metadata-token: imds-session-token .*security-credentials/stylesphere-instance-role$")
    assert m.index(r"^apt-get .*update") < m.index(r"^apt-get .*install")

    # The release is unpacked and compose gets IMAGES_BASE_URL from .env.
    assert (m.app_dir / "docker-compose.yml").is_file()
    assert (m.app_dir / "backend/Dockerfile").is_file()
    env = (m.app_dir / ".env").read_text()
    assert f"IMAGES_BASE_URL='{IMAGES}'" in env.splitlines()
    assert f"--file {m.app_dir}/docker-compose.yml" in m.calls[m.index(r" up --build -d")]
    fstab = (m.root / "etc/fstab").read_text()
    assert fstab.count(f"{m.root}/swapfile none swap sw 0 0") == 1
    assert "LABEL=cloudimg-rootfs" in fstab
    assert "PROVISION-BOOTSTRAP-OK" in m.log


def test_credentials_stay_out_of_arguments_logs_and_console(machine):
    m = machine.run()
    assert m.rc == 0
    exposed = "\n".join(m.calls) + m.log + "\n".join(m.console_lines) + m.script.read_text()
    for secret in SECRETS:
        assert secret not in exposed
    # ...and reach curl through its config on stdin.
    config = (m.state / "curl-config").read_text()
    assert 'user = "ASIASTUBKEYID:stub/secret+KEY"' in config
    assert 'header = "x-amz-security-token: stub-session-token=="' in config
    assert m.called(r"^curl .*-H x-amz-content-sha256: UNSIGNED-PAYLOAD .*-K -")


def test_second_run_reinstalls_and_duplicates_nothing(machine):
    first = machine.run()
    assert first.rc == 0
    second = machine.run()
    assert second.rc == 0, second.console_lines
    assert second.markers() == [SUCCESS_MARKER]
    assert not second.called(r"^apt-get ")
    assert not second.called(r"^(fallocate|mkswap) ")
    assert not second.called(r"^swapon .*/swapfile$")
    assert not second.called(r"amazonaws\.com/releases/")
    assert not second.called(r"^systemctl enable")
    assert second.called(r"^docker compose .* up --build -d")
    assert any("step=swap done" in l and "already active" in l for l in second.console_lines)
    assert any("step=docker done" in l and "already installed" in l for l in second.console_lines)
    assert any("step=fetch done" in l and "already in place" in l for l in second.console_lines)
    fstab = (machine.root / "etc/fstab").read_text()
    assert fstab.count("swapfile none swap") == 1
    env = (machine.app_dir / ".env").read_text()
    assert env.count("IMAGES_BASE_URL=") == 1
    assert (machine.state / "swaps").read_text().count("swapfile") == 1
    assert sorted(p.name for p in (machine.root / "opt/stylesphere").iterdir()) == ["app", "release"]
    # The log keeps both runs; each run printed one marker.
    assert machine.log.count(SUCCESS_MARKER) == 2


@pytest.mark.parametrize("fail,step,not_after", [
    ("apt", "docker", r"amazonaws\.com/releases/"),
    ("role", "fetch", r"^docker compose .* build"),
    ("fetch", "fetch", r"^docker compose .* build"),
    ("build", "build", r" up --build -d"),
    ("start", "start", r"127\.0\.0\.1:5000"),
    ("health", "health", r"127\.0\.0\.1:3000"),
])
def test_failure_prints_one_failure_marker(machine, fail, step, not_after):
    m = machine.run(fail=fail)
    assert m.rc != 0
    assert m.markers() == [f"{FAILURE_MARKER} step={step}"], m.console_lines
    assert m.console_lines[-1] == f"{FAILURE_MARKER} step={step}"
    assert SUCCESS_MARKER not in "\n".join(m.console_lines)
    assert any(l.startswith(f"provision-bootstrap: step={step} failed") for l in m.console_lines)
    assert not m.called(not_after), "a later step ran after the failure"
    for secret in SECRETS:
        assert secret not in "\n".join(m.console_lines) + m.log


def test_failed_run_then_rerun_succeeds_with_one_marker_each(machine):
    failed = machine.run(fail="build")
    assert failed.markers() == [f"{FAILURE_MARKER} step=build"]
    ok = machine.run()
    assert ok.rc == 0
    # The earlier failure is in the log but not repeated on this run's console.
    assert ok.markers() == [SUCCESS_MARKER]
    assert not ok.called(r"^apt-get ")


def test_failure_tail_does_not_repeat_earlier_markers(machine):
    assert machine.run().rc == 0
    m = machine.run(fail="health")
    assert m.markers() == [f"{FAILURE_MARKER} step=health"]


def test_checksum_mismatch_fails_fetch(tmp_path):
    m = Machine(tmp_path, release_key="releases/" + "0" * 64 + ".tar.gz").run()
    assert m.markers() == [f"{FAILURE_MARKER} step=fetch"]
    assert any("checksum mismatch" in l for l in m.console_lines)
    assert not (m.app_dir / "docker-compose.yml").exists()


def test_release_without_compose_file_fails_fetch(tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("README")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    m = Machine(tmp_path, tarball=buf.getvalue()).run()
    assert m.markers() == [f"{FAILURE_MARKER} step=fetch"]


def test_git_app_source_clones_instead_of_s3(tmp_path):
    m = Machine(tmp_path, app_source="git+https://github.com/example/stylesphere.git#main").run()
    assert m.rc == 0, m.console_lines
    assert m.markers() == [SUCCESS_MARKER]
    assert m.called(r"^git clone --quiet --depth 1 --branch main https://github\.com/example/stylesphere\.git ")
    assert m.called(r"^apt-get .*install .* git")
    assert not m.called(r"amazonaws\.com")
    assert not m.called(r"169\.254\.169\.254")
    assert (m.app_dir / "docker-compose.yml").is_file()
    again = Machine.__new__(Machine)
    again.__dict__.update(m.__dict__)
    again.run()
    assert again.rc == 0
    assert not again.called(r"^git ")
