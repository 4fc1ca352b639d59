"""`provision exec` and `provision ssh` end to end: a stack with a bastion built through the CLI on
moto, and a real OpenSSH server on loopback standing in for the bastion and the app instances (moto
runs no machines). The stack's own key (made by `up --bastion`) is the one that logs in; host keys
are pinned under the instance ids that AWS reports."""

from __future__ import annotations

import os
import stat

import pytest

from provisioner.cli import remote as remote_cli
from provisioner.commands.keys import KeyStore

from stacks import REGION
from test_cli import cli, run, state_dir  # noqa: F401  (fixtures)
from test_remote import sshd_factory  # noqa: F401  (fixture)

STACK = "stylesphere"
CIDR = "203.0.113.7/32"


@pytest.fixture
def stack_with_bastion(moto_aws, state_dir):
    result = cli("up", "--yes", "--bastion", "--ssh-cidr", CIDR, state_dir=state_dir)
    assert result.exit_code == 0, result.output
    return KeyStore(state_dir, STACK)


@pytest.fixture
def machines(stack_with_bastion, sshd_factory, monkeypatch):
    """One sshd that answers for the bastion and for every instance, accepting the stack's key."""
    server = sshd_factory("machines")
    server.authorize(stack_with_bastion.public_key())
    monkeypatch.setattr(remote_cli, "address_of", lambda instance, public: ("127.0.0.1", server.port))
    monkeypatch.setattr(remote_cli, "SSH_USER", server.user)
    return server


def exec_(*args, state_dir, **kwargs):
    """`provision exec`, with the global options before the `--` that starts the command."""
    split = args.index("--")
    return run("exec", *args[:split], "--state-dir", state_dir, "--region", REGION, *args[split:], **kwargs)


def instance_ids(state_dir) -> list[str]:
    import json

    status = json.loads(cli("status", "--json", state_dir=state_dir).stdout)
    return [i["id"] for i in status["instances"]]


def test_up_with_a_bastion_keeps_the_private_key_with_mode_0600(stack_with_bastion):
    path = stack_with_bastion.private_key_path
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stack_with_bastion.public_key().startswith("ssh-ed25519 ")


def test_exec_runs_on_every_instance_in_parallel_and_pins_their_host_keys(machines, state_dir, tmp_path):
    ids = instance_ids(state_dir)
    assert len(ids) == 2
    result = exec_("--", "echo", "ran", "on", "$(hostname)", ";", "echo", "warn", ">&2", state_dir=state_dir)
    assert result.exit_code == 0, result.output
    for instance in ids:
        assert f"── {instance} (127.0.0.1): exit 0" in result.text
    assert result.stdout.count("ran on ") == 2
    assert "2 of 2 instance(s) exited 0" in result.text
    known = KeyStore(state_dir, STACK).known_hosts_path
    names = sorted(line.split()[0] for line in known.read_text().splitlines())
    assert len(names) == 3 and set(ids) < set(names)   # the bastion and both instances, by id
    assert stat.S_IMODE(os.stat(known).st_mode) == 0o600


def test_one_instance_gives_its_exit_status(machines, state_dir):
    instance = instance_ids(state_dir)[0]
    result = exec_("--instance", instance, "--", "echo out; exit 7", state_dir=state_dir)
    assert result.exit_code == 7, result.output
    assert "out" in result.stdout and "──" not in result.stdout


def test_an_unknown_instance_is_refused_before_connecting(machines, state_dir):
    result = exec_("--instance", "i-0123456789abcdef0", "--", "true", state_dir=state_dir)
    assert result.exit_code == 2
    assert "no running instance i-0123456789abcdef0" in result.text
    assert not KeyStore(state_dir, STACK).known_hosts_path.exists()


def test_a_changed_host_key_is_refused_and_nothing_runs(machines, state_dir, tmp_path):
    assert exec_("--", "true", state_dir=state_dir).exit_code == 0
    known = KeyStore(state_dir, STACK).known_hosts_path
    before = known.read_bytes()
    machines.restart(new_host_key=True)
    marker = tmp_path / "ran"
    result = exec_("--", f"touch {marker}", state_dir=state_dir)
    assert result.exit_code == 2, result.output
    assert "has changed" in result.text and "ssh-keygen -R" in result.text
    assert not marker.exists()
    assert known.read_bytes() == before


def test_an_unreachable_bastion_is_a_clear_error_not_a_hang(stack_with_bastion, state_dir, monkeypatch):
    import socket

    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    monkeypatch.setattr(remote_cli, "address_of", lambda instance, public: ("127.0.0.1", port))
    result = exec_("--connect-timeout", "2", "--", "true", state_dir=state_dir)
    assert result.exit_code == 1, result.output
    assert "cannot reach the bastion" in result.text and "refused" in result.text


def test_ssh_without_a_terminal_feeds_stdin_to_the_shell(machines, state_dir):
    result = cli("ssh", state_dir=state_dir, input="echo hello-from-shell\nexit 5\n")
    assert result.exit_code == 5, result.output
    assert "hello-from-shell" in result.output


def test_a_stack_without_a_bastion_says_how_to_add_one(moto_aws, state_dir):
    assert cli("up", "--yes", "--no-wait", state_dir=state_dir).exit_code == 0
    result = exec_("--", "true", state_dir=state_dir)
    assert result.exit_code == 2
    assert "no SSH key" in result.text or "no running bastion" in result.text
    assert "--bastion" in result.text


def test_bastion_without_a_cidr_is_refused_rather_than_open_to_the_world(moto_aws, state_dir):
    result = cli("up", "--yes", "--bastion", state_dir=state_dir)
    assert result.exit_code == 2, result.output
    assert "0.0.0.0/0" in result.text and "--ssh-cidr" in result.text
    assert not os.path.exists(os.path.join(state_dir, f"{STACK}.json"))


def test_at_a_terminal_up_asks_for_the_cidr_and_remembers_it(moto_aws, state_dir, monkeypatch):
    import json

    monkeypatch.setattr("provisioner.commands.runner.at_terminal", lambda: True)
    result = cli("up", "--yes", "--no-wait", "--bastion", state_dir=state_dir, input="198.51.100.7\n")
    assert result.exit_code == 0, result.output
    assert "SSH to the bastion from which addresses?" in result.output
    saved = json.loads(open(os.path.join(state_dir, f"{STACK}.json")).read())
    assert saved["config"]["ssh_cidr"] == "198.51.100.7/32"
    status = cli("status", state_dir=state_dir)
    assert "tcp/22 from 198.51.100.7/32" in status.text


def test_down_deletes_the_key_pair_the_private_key_and_the_known_hosts(machines, state_dir):
    import boto3

    assert exec_("--", "true", state_dir=state_dir).exit_code == 0
    keys = KeyStore(state_dir, STACK)
    assert keys.private_key_path.exists() and keys.known_hosts_path.exists()
    result = cli("down", "--yes", state_dir=state_dir)
    assert result.exit_code == 0, result.output
    assert not keys.private_key_path.exists() and not keys.known_hosts_path.exists()
    ec2 = boto3.client("ec2", region_name="us-east-1")
    assert [k for k in ec2.describe_key_pairs()["KeyPairs"] if k["KeyName"].startswith(STACK)] == []
