"""The smaller defects of "Never touch what is not ours", each checked before anything changes:
the VPC's default security group left with AWS's allow-all rules; an SSH rule open to more than
a /16 after a mere warning; a state directory that cannot be written (or is a file) met as a
traceback, and made with the umask's mode although it holds SSH private keys; a bad private key
found only at the key pair step, 20 resources in; and a single stack's instances never held
against the account's vCPU quota."""

from __future__ import annotations

import json
import os
import stat

import boto3
import pytest

from provisioner.shape.config import StackConfig
from provisioner.engine.context import is_mutating
from provisioner.engine.errors import ConfigError
from provisioner.commands.keys import KeyStore
from provisioner.engine.state import StackState, StateFile

from stacks import ACCOUNT, REGION, make_session, outcomes
from test_cli import cli, refuse, state_dir  # noqa: F401  (the state_dir fixture)
from test_fleet import calls, hooks  # noqa: F401  (fixtures: the strict rules on every CLI session)

KEY_CIDR = "203.0.113.7/32"
VCPU_CODE = "L-1216C47A"


def mutating(calls) -> list[str]:
    return [op for _, op in calls if is_mutating(op)]


def ec2():
    return boto3.client("ec2", region_name=REGION)


def default_group(vpc_id: str) -> dict:
    (group,) = ec2().describe_security_groups(Filters=[{"Name": "vpc-id", "Values": [vpc_id]},
                                                       {"Name": "group-name", "Values": ["default"]}])["SecurityGroups"]
    return group


def group_rules(group_id: str) -> list[dict]:
    return ec2().describe_security_group_rules(
        Filters=[{"Name": "group-id", "Values": [group_id]}])["SecurityGroupRules"]


def saved_config(state_dir, stack="stylesphere") -> dict:
    with open(os.path.join(state_dir, f"{stack}.json")) as f:
        return json.load(f)["config"]


# -- 1. the VPC's default security group ---------------------------------------------------------

def test_the_strict_fixture_gives_a_new_vpc_awss_default_rules(strict):
    """AWS's default group allows all inbound traffic from itself and all outbound traffic;
    moto's has the outbound rule only, so the fixture adds the inbound one."""
    client = make_session(strict).client("ec2")
    vpc_id = client.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    group = default_group(vpc_id)
    rules = group_rules(group["GroupId"])
    assert {(r["IsEgress"], r.get("CidrIpv4"), r.get("ReferencedGroupInfo", {}).get("GroupId")) for r in rules} == {
        (True, "0.0.0.0/0", None), (False, None, group["GroupId"])}


def test_up_removes_the_default_security_groups_rules(make_stack):
    """AWS Foundational Security Best Practices EC2.2: the default group allows no traffic."""
    stack = make_stack()
    assert outcomes(stack.up(only=["vpc"])) == {"vpc": "created"}
    vpc_id = stack.state_file.read().resources["vpc"]["id"]
    group = default_group(vpc_id)
    assert group["IpPermissions"] == [] and group["IpPermissionsEgress"] == []
    assert group_rules(group["GroupId"]) == []

    assert outcomes(stack.up(only=["vpc"])) == {"vpc": "kept"}
    assert stack.mutating_calls() == []


def test_a_rule_added_by_hand_to_the_default_group_is_planned_then_removed(make_stack):
    stack = make_stack()
    stack.up(only=["vpc"])
    group_id = default_group(stack.state_file.read().resources["vpc"]["id"])["GroupId"]
    ec2().authorize_security_group_ingress(GroupId=group_id, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
    ec2().authorize_security_group_egress(GroupId=group_id, IpPermissions=[
        {"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])

    (planned,) = stack.plan(only=["vpc"])
    assert planned.outcome == "update"
    assert planned.changes == ["remove the default security group's 2 rule(s)"]
    assert stack.mutating_calls() == []
    assert len(group_rules(group_id)) == 2

    (fixed,) = stack.up(only=["vpc"])
    assert fixed.outcome == "updated" and fixed.changes == planned.changes
    assert group_rules(group_id) == []
    assert {"RevokeSecurityGroupIngress", "RevokeSecurityGroupEgress"} <= set(op for _, op in stack.last_ctx.calls)

    assert outcomes(stack.up(only=["vpc"])) == {"vpc": "kept"}
    assert stack.mutating_calls() == []
    assert outcomes(stack.plan(only=["vpc"])) == {"vpc": "no change"}


def test_the_whole_stack_through_the_cli_leaves_the_default_group_closed(hooks, state_dir, calls):
    assert cli("up", "--yes", "--no-wait", state_dir=state_dir).exit_code == 0
    vpc_id = json.load(open(os.path.join(state_dir, "stylesphere.json")))["resources"]["vpc"]["id"]
    assert group_rules(default_group(vpc_id)["GroupId"]) == []
    calls.clear()
    again = cli("up", "--yes", "--no-wait", state_dir=state_dir)
    assert again.exit_code == 0, again.output
    assert mutating(calls) == []


# -- 2. SSH from more than a /16 -----------------------------------------------------------------

@pytest.mark.parametrize("cidr", ["0.0.0.0/0", "10.0.0.0/8", "198.50.0.0/15"])
def test_a_wide_ssh_cidr_is_refused_by_the_config_without_the_flag(cidr):
    config = StackConfig(bastion=True, ssh_cidr=cidr)
    with pytest.raises(ConfigError, match="--allow-wide-ssh") as raised:
        config.check_ssh_exposure()
    assert cidr in raised.value.message and "/16" in raised.value.message
    assert "--ssh-cidr 203.0.113.7/32" in raised.value.hint
    allowed = StackConfig(bastion=True, ssh_cidr=cidr, allow_wide_ssh=True).check_ssh_exposure()
    assert cidr in allowed


@pytest.mark.parametrize("cidr", ["10.1.0.0/16", "203.0.113.0/24", KEY_CIDR])
def test_a_slash_16_or_narrower_needs_no_flag(cidr):
    assert StackConfig(bastion=True, ssh_cidr=cidr).check_ssh_exposure() is None


def test_no_bastion_means_no_ssh_rule_to_check():
    assert StackConfig(bastion=False, ssh_cidr="0.0.0.0/0").check_ssh_exposure() is None


@pytest.mark.parametrize("command", ["up", "plan"])
@pytest.mark.parametrize("cidr", ["0.0.0.0/0", "10.0.0.0/8"])
def test_up_and_plan_refuse_a_wide_ssh_cidr_before_any_change(moto_aws, state_dir, calls, command, cidr):
    result = cli(command, "--yes", "--bastion", "--ssh-cidr", cidr, state_dir=state_dir)
    assert result.exit_code == 2, result.output
    assert f"--ssh-cidr {cidr}" in result.text and "--allow-wide-ssh" in result.text
    assert mutating(calls) == []
    assert not os.path.exists(os.path.join(state_dir, "stylesphere.json"))


def test_allow_wide_ssh_builds_with_a_warning_and_is_remembered_with_its_cidr(moto_aws, state_dir):
    built = cli("up", "--yes", "--no-wait", "--bastion", "--ssh-cidr", "0.0.0.0/0", "--allow-wide-ssh",
                state_dir=state_dir)
    assert built.exit_code == 0, built.output
    assert "accepts SSH from 0.0.0.0/0" in built.text
    assert saved_config(state_dir)["allow_wide_ssh"] is True

    plain = cli("up", "--yes", "--no-wait", state_dir=state_dir)
    assert plain.exit_code == 0, plain.output
    assert "accepts SSH from 0.0.0.0/0" in plain.text
    assert cli("plan", state_dir=state_dir).exit_code == 0

    # The permission goes with the CIDR it was given for: another wide one needs it again.
    other = cli("up", "--yes", "--no-wait", "--ssh-cidr", "10.0.0.0/8", state_dir=state_dir)
    assert other.exit_code == 2, other.output
    assert "--allow-wide-ssh" in other.text
    assert saved_config(state_dir)["ssh_cidr"] == "0.0.0.0/0"


def test_plan_accepts_a_slash_16_without_the_flag(moto_aws, state_dir):
    result = cli("plan", "--bastion", "--ssh-cidr", "10.1.0.0/16", state_dir=state_dir)
    assert result.exit_code == 0, result.output
    assert "allow-wide-ssh" not in result.text


ROSTER = "name,email\nAda Lovelace,ada@example.edu\n"


@pytest.fixture
def roster(tmp_path):
    path = tmp_path / "cs101.csv"
    path.write_text(ROSTER)
    return str(path)


def test_fleet_up_refuses_a_wide_ssh_cidr_before_any_change(hooks, roster, state_dir, calls):
    result = cli("fleet", "up", "--roster", roster, "--no-wait", "--bastion", "--ssh-cidr", "0.0.0.0/0",
                 state_dir=state_dir)
    assert result.exit_code == 2, result.output
    assert "--allow-wide-ssh" in result.text
    assert mutating(calls) == []


# -- 3. the state directory ----------------------------------------------------------------------

@pytest.mark.parametrize("command", ["up", "plan", "status", "down"])
def test_a_state_dir_under_a_file_is_refused_before_any_aws_call(moto_aws, tmp_path, calls, command):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    target = blocker / "state"
    result = cli(command, "--yes", state_dir=str(target))
    assert result.exit_code == 2, result.output
    assert f"state directory {target}" in result.text and f"{blocker} is a file" in result.text
    assert calls == []
    assert blocker.read_text() == "x"


def _unwritable_for_root() -> tuple[str, str] | None:
    """/sys refuses new entries even to root (where chmod 0500 stops nothing), as a read-only
    mount would: the directory, and the kernel's words for the refusal."""
    if not os.path.isdir("/sys"):
        return None
    try:
        os.mkdir("/sys/provision-probe")
    except OSError as e:
        return "/sys", e.strerror
    os.rmdir("/sys/provision-probe")
    return None


@pytest.mark.parametrize("leaf", ["", "provision-state"])
def test_a_state_dir_that_cannot_be_written_is_refused_before_any_aws_call(moto_aws, calls, leaf):
    found = _unwritable_for_root()
    if found is None:
        pytest.skip("no directory here refuses writes to this user")
    base, why = found
    target = os.path.join(base, leaf) if leaf else base
    result = cli("up", "--yes", state_dir=target)
    assert result.exit_code == 2, result.output
    assert f"state directory {target}" in result.text and why in result.text
    assert calls == []


def test_a_state_dir_that_is_a_file_is_refused(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match=f"state directory {blocker} is a file"):
        StateFile(blocker, "lab").check_dir()


def test_check_dir_creates_nothing(tmp_path):
    StateFile(tmp_path / "a" / "state", "lab").check_dir()
    assert os.listdir(tmp_path) == []


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_the_state_dir_is_made_private_whatever_the_umask(tmp_path, umask_022):
    """It holds the stacks' SSH private keys: only its owner may list or enter it."""
    made_by_save = tmp_path / "one" / "state"
    StateFile(made_by_save, "lab").save(StackState(stack="lab", account=ACCOUNT, region=REGION))
    assert _mode(made_by_save) == 0o700

    made_by_lock = tmp_path / "two"
    with StateFile(made_by_lock, "lab").lock():
        assert _mode(made_by_lock) == 0o700

    made_by_key = tmp_path / "three"
    KeyStore(made_by_key, "lab").generate()
    assert _mode(made_by_key) == 0o700


def test_an_existing_state_dir_keeps_its_mode(tmp_path, umask_022):
    """A directory the user made (`--state-dir .`) is theirs: the tool does not chmod it."""
    mine = tmp_path / "mine"
    mine.mkdir(mode=0o755)
    StateFile(mine, "lab").save(StackState(stack="lab", account=ACCOUNT, region=REGION))
    assert _mode(mine) == 0o755


# -- 4. the private key, before anything is built -----------------------------------------------

def _key(state_dir, stack="stylesphere") -> KeyStore:
    keys = KeyStore(state_dir, stack)
    keys.generate()
    return keys


def test_a_world_readable_key_refuses_up_bastion_before_any_change(moto_aws, state_dir, calls):
    keys = _key(state_dir)
    os.chmod(keys.private_key_path, 0o644)
    before = keys.private_key_path.read_bytes()
    result = cli("up", "--yes", "--no-wait", "--bastion", "--ssh-cidr", KEY_CIDR, state_dir=state_dir)
    assert result.exit_code == 2, result.output
    assert f"chmod 600 {keys.private_key_path}" in result.text
    assert mutating(calls) == []
    assert keys.private_key_path.read_bytes() == before and _mode(keys.private_key_path) == 0o644


def test_a_key_that_is_not_a_key_refuses_up_bastion_before_any_change(moto_aws, state_dir, calls):
    keys = KeyStore(state_dir, "stylesphere")
    os.makedirs(state_dir)
    keys.private_key_path.write_bytes(b"not a key\n")
    os.chmod(keys.private_key_path, 0o600)
    result = cli("up", "--yes", "--no-wait", "--bastion", "--ssh-cidr", KEY_CIDR, state_dir=state_dir)
    assert result.exit_code == 2, result.output
    assert "is not a readable OpenSSH private key" in result.text
    assert mutating(calls) == []
    assert keys.private_key_path.read_bytes() == b"not a key\n"


def test_a_key_path_that_is_a_directory_refuses_up_bastion(moto_aws, state_dir, calls):
    keys = KeyStore(state_dir, "stylesphere")
    os.makedirs(keys.private_key_path)
    result = cli("up", "--yes", "--no-wait", "--bastion", "--ssh-cidr", KEY_CIDR, state_dir=state_dir)
    assert result.exit_code == 2, result.output
    assert f"{keys.private_key_path} is not a file" in result.text
    assert mutating(calls) == []


def test_the_key_is_not_checked_without_a_bastion(moto_aws, state_dir):
    keys = _key(state_dir)
    os.chmod(keys.private_key_path, 0o644)
    assert cli("plan", state_dir=state_dir).exit_code == 0


def test_the_fleet_checks_each_students_key_before_building_it(hooks, roster, state_dir, calls):
    keys = _key(state_dir, "cs101-ada-lovelace")
    os.chmod(keys.private_key_path, 0o644)
    result = cli("fleet", "up", "--roster", roster, "--no-wait", "--bastion", "--ssh-cidr", KEY_CIDR,
                 state_dir=state_dir)
    assert result.exit_code == 1, result.output
    assert "chmod 600" in result.text and "0 of 1 stack(s) up" in result.text
    assert mutating(calls) == []


# -- 5. one stack's instances against the vCPU quota ---------------------------------------------

def test_up_refuses_instances_beyond_the_vcpu_quota_before_any_change(hooks, state_dir, calls):
    result = cli("up", "--yes", "--no-wait", "--desired", "10000", "--max", "10000", state_dir=state_dir)
    assert result.exit_code == 2, result.output
    # The emulator's quota is 32 vCPUs; a t3.micro has 2.
    assert f"--service-code ec2 --quota-code {VCPU_CODE} --desired-value 20000 --region {REGION}" in result.text
    assert "32 vCPUs, 0 in use" in result.text and "nothing was created" in result.text
    assert mutating(calls) == []
    assert not os.path.exists(os.path.join(state_dir, "stylesphere.json"))


def test_the_quota_is_read_only_when_the_stack_grows(hooks, state_dir, calls):
    assert cli("up", "--yes", "--no-wait", state_dir=state_dir).exit_code == 0
    assert "GetServiceQuota" in [op for _, op in calls]

    calls.clear()
    assert cli("up", "--yes", "--no-wait", state_dir=state_dir).exit_code == 0
    assert "GetServiceQuota" not in [op for _, op in calls]

    calls.clear()
    grown = cli("up", "--yes", "--no-wait", "--desired", "3", state_dir=state_dir)
    assert grown.exit_code == 0, grown.output
    assert "GetServiceQuota" in [op for _, op in calls]

    calls.clear()
    refused = cli("up", "--yes", "--no-wait", "--desired", "10000", "--max", "10000", state_dir=state_dir)
    assert refused.exit_code == 2, refused.output
    assert f"--quota-code {VCPU_CODE}" in refused.text
    assert mutating(calls) == []
    assert saved_config(state_dir)["desired_capacity"] == 3


def test_a_refused_quota_read_is_a_warning(hooks, state_dir, calls):
    assert cli("up", "--yes", "--no-wait", state_dir=state_dir).exit_code == 0
    hooks.append(("before-call.service-quotas.GetServiceQuota",
                  lambda **_: refuse("AccessDeniedException", "not allowed to read quotas", 400)))
    result = cli("up", "--yes", "--no-wait", "--desired", "3", state_dir=state_dir)
    assert result.exit_code == 0, result.output
    assert "cannot read quotas" in result.text and "servicequotas:GetServiceQuota" in result.text
    assert saved_config(state_dir)["desired_capacity"] == 3
