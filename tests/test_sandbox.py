"""The sandbox as a user runs it: separate `provision` processes against the emulator, which
starts on first use on 127.0.0.1 and keeps its resources until `provision sandbox stop`."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest


@pytest.fixture
def provision(tmp_path):
    env = {**os.environ, "PROVISION_SANDBOX_DIR": str(tmp_path / "sandbox"),
           "PROVISION_STATE_DIR": str(tmp_path / "state")}
    env.pop("AWS_ACCESS_KEY_ID", None)  # the sandbox needs no credentials
    env.pop("AWS_SECRET_ACCESS_KEY", None)

    def run(*args, check=True, extra_env=None):
        result = subprocess.run([sys.executable, "-m", "provisioner.cli.main", *args], env={**env, **(extra_env or {})},
                                capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
        if check:
            assert result.returncode == 0, (args, result.stdout, result.stderr)
        return result

    run.env = env
    yield run
    run("sandbox", "stop", check=False)


def test_sandbox_lifecycle_across_processes(provision, tmp_path):
    assert "not running" in provision("sandbox", "status").stdout

    up = provision("up", "--sandbox")
    assert "37 created" in up.stdout
    assert "running at http://127.0.0.1:" in provision("sandbox", "status").stdout

    again = provision("up", "--sandbox")
    assert "37 kept" in again.stdout
    assert "warning: the sandbox server was started by" not in up.stderr + again.stderr

    # A server an older installation started (an upgrade since) is named as such: what it emulates
    # may differ, and only a restart gives this version's.
    info_path = tmp_path / "sandbox" / "sandbox.json"
    info = json.loads(info_path.read_text())
    info_path.write_text(json.dumps({**info, "emulation": "provision 0.1, moto 5.0.0, emulator 000000000000"}))
    stale = provision("status", "--sandbox")
    assert "the sandbox server was started by provision 0.1, moto 5.0.0" in stale.stderr
    assert "`provision sandbox stop` restarts it" in stale.stderr
    info_path.write_text(json.dumps(info))

    status = json.loads(provision("status", "--sandbox", "--json").stdout)
    assert {s["state"] for s in status["steps"]} == {"present"}
    assert [i["state"] for i in status["instances"]] == ["healthy", "healthy"]
    outputs = json.loads(provision("outputs", "--sandbox", "--json").stdout)
    assert outputs["vpc_id"].startswith("vpc-") and outputs["account"] == "123456789012"
    assert outputs["url"].startswith("https://") and outputs["asg_name"] == "stylesphere-web"
    assert (tmp_path / "state" / "stylesphere.json").exists()

    # Any emulator or proxy can stand in for AWS through the standard AWS_ENDPOINT_URL: the same
    # stack, seen without --sandbox, through the endpoint and the usual credential variables.
    endpoint = provision("sandbox", "status").stdout.split("running at ")[1].split()[0]
    via_env = provision("status", "--json", "--region", "us-east-1", "--state-dir", str(tmp_path / "other"),
                        extra_env={"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "x",
                                   "AWS_SECRET_ACCESS_KEY": "x"})
    assert {s["state"] for s in json.loads(via_env.stdout)["steps"]} == {"present"}

    refused = provision("down", "--sandbox", check=False)  # not a terminal and no --yes
    assert refused.returncode == 2 and "--yes" in refused.stderr

    down = provision("down", "--sandbox", "--yes")
    assert "37 deleted" in down.stdout
    assert not (tmp_path / "state" / "stylesphere.json").exists()
    assert "nothing left" in provision("down", "--sandbox", "--yes").stdout

    assert "sandbox stopped" in provision("sandbox", "stop").stdout


def test_a_reader_that_goes_away_does_not_stop_the_run(provision, tmp_path):
    """`provision up 2>&1 | head -2`: once the pipe closes, the run must still finish."""
    proc = subprocess.Popen([sys.executable, "-m", "provisioner.cli.main", "up", "--sandbox"], env=provision.env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    proc.stdout.readline()
    proc.stdout.close()
    assert proc.wait(timeout=120) in (0, 1)  # rich ends with 1 if the summary itself cannot be written
    saved = json.loads((tmp_path / "state" / "stylesphere.json").read_text())
    assert len(saved["resources"]) == 37
    assert "37 deleted" in provision("down", "--sandbox", "--yes").stdout
