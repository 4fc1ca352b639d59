"""The CLI through click's test runner, in-process on moto: every bad input gets a clear message,
the right exit code, no traceback, and changes nothing (in AWS and in the state directory)."""

from __future__ import annotations

import functools
import json
import os
import socket
import subprocess
import traceback

import boto3
import pytest
from click.testing import CliRunner

from stacks import ACCOUNT, NETWORK_RESOURCES, REGION, live_network_resources, live_resources, tagged_leftovers
from provisioner.cli.main import main
from provisioner.shape.config import STACK_NAME_MAX
from provisioner.engine.context import RunContext, is_mutating
from provisioner.engine.state import StackState, StateFile

COMMANDS = ["up", "plan", "status", "outputs", "down"]
GLOBAL_OPTIONS = ["--stack", "--region", "--profile", "--state-dir", "--sandbox", "--verbose", "--yes"]


# -- helpers -----------------------------------------------------------------------------------

class Invocation:
    def __init__(self, result):
        self.result = result
        self.exit_code = result.exit_code
        self.output = result.output
        self.stdout = result.stdout
        # rich wraps long lines: compare text with the line breaks folded away
        self.text = " ".join(result.output.split())


def run(*args, env=None, input=None) -> Invocation:
    result = CliRunner().invoke(main, [str(a) for a in args], env={"COLUMNS": "200", **(env or {})},
                                input=input)
    # An exception other than SystemExit is a crash the user would see as a traceback.
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"{result.exception!r}\n{''.join(traceback.format_exception(*result.exc_info))}\n{result.output}")
    assert "Traceback" not in result.output, result.output
    return Invocation(result)


def cli(*args, state_dir, region=REGION, **kwargs) -> Invocation:
    """A command with the usual global options (region, state dir)."""
    extra = ["--state-dir", state_dir] + (["--region", region] if region else [])
    return run(*args, *extra, **kwargs)


@functools.lru_cache(maxsize=None)
def ec2():
    # Explicit credentials: some tests remove the ones in the environment. moto intercepts every
    # client while a mock is active, so one client serves all tests.
    return boto3.client("ec2", region_name=REGION, aws_access_key_id="testing",
                        aws_secret_access_key="testing")


def aws_snapshot() -> dict[str, set[str]]:
    """Every network resource's id in the region (moto's default VPC included)."""
    found: dict[str, set[str]] = {key: set() for _, key, _ in NETWORK_RESOURCES}
    for key, resource_id, _ in live_network_resources(ec2()):
        found[key].add(resource_id)
    return found


def only_default_vpc():
    vpcs = ec2().describe_vpcs()["Vpcs"]
    return all(v.get("IsDefault") for v in vpcs)


def dir_snapshot(path) -> dict[str, bytes]:
    if not os.path.isdir(path):
        return {}
    return {name: open(os.path.join(path, name), "rb").read() for name in sorted(os.listdir(path))}


def write_state(state_dir, stack="stylesphere", **fields) -> bytes:
    data = StackState(stack=stack, account=ACCOUNT, region=REGION).to_json()
    data.update(fields)
    os.makedirs(state_dir, exist_ok=True)
    path = os.path.join(state_dir, f"{stack}.json")
    with open(path, "w") as f:
        json.dump(data, f)
    return open(path, "rb").read()


def refuse(code: str, message: str, status: int = 400):
    """What a before-call handler returns to make botocore raise this ClientError."""

    class Http:
        status_code = status
        headers: dict = {}
        content = b""

    return Http(), {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}}


@pytest.fixture
def inject(monkeypatch):
    """inject(event, handler): register a botocore event handler on every client the CLI makes
    (it builds its own session in RunContext), after RunContext's own handlers."""
    hooks: list[tuple[str, object]] = []
    original = RunContext.client

    def client(self, service, *args, **kwargs):
        c = original(self, service, *args, **kwargs)
        if not getattr(c, "_test_hooks", False):
            for event, handler in hooks:
                c.meta.events.register(event, handler)
            c._test_hooks = True
        return c

    monkeypatch.setattr(RunContext, "client", client)
    return lambda event, handler: hooks.append((event, handler))


@pytest.fixture
def state_dir(tmp_path):
    return str(tmp_path / "state")


@pytest.fixture
def built(moto_aws, state_dir):
    """A stack brought up through the CLI."""
    result = cli("up", "--yes", state_dir=state_dir)
    assert result.exit_code == 0, result.output
    return state_dir


# -- help and the option contract --------------------------------------------------------------

def test_top_level_help():
    result = run("--help")
    assert result.exit_code == 0
    for command in COMMANDS + ["sandbox"]:
        assert command in result.output


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_the_global_options(command):
    result = run(command, "--help")
    assert result.exit_code == 0
    for option in GLOBAL_OPTIONS:
        assert option in result.output, option
    assert "PROVISION_STACK" in result.text and "PROVISION_STATE_DIR" in result.text


@pytest.mark.parametrize("command", ["start", "status", "stop"])
def test_sandbox_subcommand_help(command):
    assert run("sandbox", command, "--help").exit_code == 0


def test_version():
    result = run("--version")
    assert result.exit_code == 0 and "provision" in result.output


# -- stack names -------------------------------------------------------------------------------

@pytest.mark.parametrize("name, words", [
    ("a" * (STACK_NAME_MAX + 1), f"is {STACK_NAME_MAX + 1} characters; at most {STACK_NAME_MAX} fit"),
    ("x" * 40, "32-character limit"),
    ("StyleSphere", "invalid stack name 'StyleSphere'"),
    ("1lab", "invalid stack name '1lab'"),
    ("lab-", "invalid stack name 'lab-'"),
    ("lab--x", "invalid stack name 'lab--x'"),
    ("-lab", "invalid stack name '-lab'"),
    ("lab_x", "invalid stack name 'lab_x'"),
    ("", "the stack name is empty"),
])
def test_invalid_stack_names_are_refused(moto_aws, state_dir, name, words):
    before = aws_snapshot()
    result = cli("up", "--yes", "--stack", name, state_dir=state_dir)
    assert result.exit_code == 2, result.output
    assert "error:" in result.output and words in result.text
    assert aws_snapshot() == before
    assert not os.path.exists(state_dir)


@pytest.mark.parametrize("command", ["plan", "status", "outputs", "down"])
@pytest.mark.parametrize("name", ["a" * (STACK_NAME_MAX + 1), "Lab"])
def test_every_command_checks_the_stack_name(moto_aws, state_dir, command, name):
    before = aws_snapshot()
    result = cli(command, "--yes" if command == "down" else "--verbose" if command != "outputs" else "--json",
                 "--stack", name, state_dir=state_dir)
    assert result.exit_code == 2, result.output
    assert f"stack name '{name}'" in result.text
    assert aws_snapshot() == before
    assert not os.path.exists(state_dir)


def test_stack_name_error_names_the_derived_target_group_name(moto_aws, state_dir):
    name = "a" * (STACK_NAME_MAX + 1)
    result = cli("plan", "--stack", name, state_dir=state_dir)
    assert f"'{name}-frontend', a target group" in result.text


def test_the_longest_valid_stack_name_works(moto_aws, state_dir):
    name = "lab-" + "x" * (STACK_NAME_MAX - 4)
    assert len(name) == STACK_NAME_MAX == 23
    result = cli("up", "--yes", "--stack", name, state_dir=state_dir)
    assert result.exit_code == 0, result.output
    assert f"Stack '{name}' is up" in result.text
    assert tagged_leftovers(name)
    assert os.path.exists(os.path.join(state_dir, f"{name}.json"))


# -- region ------------------------------------------------------------------------------------

def test_unknown_region_is_refused_with_a_suggestion(moto_aws, state_dir):
    before = aws_snapshot()
    result = cli("up", "--yes", state_dir=state_dir, region="us-east-9")
    assert result.exit_code == 2
    assert "unknown AWS region 'us-east-9'" in result.text
    assert "did you mean us-east-" in result.text
    assert aws_snapshot() == before
    assert not os.path.exists(state_dir)


def test_unknown_region_from_the_environment_is_refused_too(moto_aws, state_dir):
    result = cli("plan", state_dir=state_dir, region=None, env={"AWS_REGION": "mars-north-1"})
    assert result.exit_code == 2
    assert "unknown AWS region 'mars-north-1'" in result.text


@pytest.mark.parametrize("command", ["up", "plan", "status", "down"])
def test_no_region_anywhere_says_to_pass_region(moto_aws, state_dir, command):
    before = aws_snapshot()
    result = cli(command, "--yes" if command in ("up", "down") else "-v", state_dir=state_dir, region=None)
    assert result.exit_code == 2, result.output
    assert "no AWS region given" in result.text
    assert "pass --region" in result.text and "AWS_REGION" in result.text and "--sandbox" in result.text
    assert aws_snapshot() == before
    assert not os.path.exists(state_dir)


@pytest.mark.parametrize("variable", ["AWS_REGION", "AWS_DEFAULT_REGION"])
def test_region_from_the_environment_is_used(moto_aws, state_dir, variable):
    result = cli("plan", state_dir=state_dir, region=None, env={variable: "eu-west-1"})
    assert result.exit_code == 0, result.output
    assert "region eu-west-1" in result.text


def test_region_option_beats_the_environment(moto_aws, state_dir):
    result = cli("plan", state_dir=state_dir, region="us-east-1", env={"AWS_REGION": "eu-west-1"})
    assert result.exit_code == 0, result.output
    assert "region us-east-1" in result.text and "eu-west-1" not in result.text


def test_region_and_credentials_from_a_profile(moto_aws, state_dir, tmp_path):
    (tmp_path / "aws-config").write_text("[profile lab]\nregion = eu-west-2\n")
    (tmp_path / "aws-credentials").write_text(
        "[lab]\naws_access_key_id = testing\naws_secret_access_key = testing\n")
    result = cli("plan", "--profile", "lab", state_dir=state_dir, region=None)
    assert result.exit_code == 0, result.output
    assert "region eu-west-2" in result.text


def test_unknown_profile_is_refused(moto_aws, state_dir):
    result = cli("plan", "--profile", "nope", state_dir=state_dir, region=None)
    assert result.exit_code == 2
    assert "AWS profile 'nope' is not configured" in result.text
    assert "aws configure" in result.text


# -- CIDRs -------------------------------------------------------------------------------------

@pytest.mark.parametrize("options, words", [
    (["--vpc-cidr", "10.0.0.0/33"], "invalid VPC CIDR '10.0.0.0/33'"),
    (["--vpc-cidr", "banana"], "invalid VPC CIDR 'banana'"),
    (["--vpc-cidr", "10.0.0.1/16"], "invalid VPC CIDR '10.0.0.1/16'"),
    (["--vpc-cidr", "10.0.0.0/8"], "has prefix /8; AWS allows /16 to /28"),
    (["--vpc-cidr", "8.8.0.0/16"], "VPC CIDR 8.8.0.0/16 is not a private (RFC 1918) range"),
    (["--public-subnets", "10.1.1.0/24,10.1.2.0/24"], "public subnet 10.1.1.0/24 is not inside the VPC CIDR 10.0.0.0/16"),
    (["--private-subnets", "10.0.11.0/24,192.168.0.0/24"], "private subnet 192.168.0.0/24 is not inside the VPC CIDR"),
    (["--public-subnets", "10.0.1.0/24,10.0.1.128/25"], "public subnet 10.0.1.128/25 overlaps public subnet 10.0.1.0/24"),
    (["--private-subnets", "10.0.1.0/25,10.0.12.0/24"], "private subnet 10.0.1.0/25 overlaps public subnet 10.0.1.0/24"),
    (["--public-subnets", "10.0.1.0/24"], "--public-subnets takes 2 comma-separated CIDRs"),
    (["--private-subnets", "10.0.11.0/24,10.0.12.0/24,10.0.13.0/24"], "--private-subnets takes 2 comma-separated CIDRs"),
    (["--public-subnets", "nope,10.0.2.0/24"], "invalid public subnet CIDR 'nope'"),
    (["--public-subnets", "10.0.1.0/24,10.0.2.0/30"], "public subnet 10.0.2.0/30 has prefix /30; AWS allows /16 to /28"),
    (["--vpc-cidr", "172.16.0.0/16"], "public subnet 10.0.1.0/24 is not inside the VPC CIDR 172.16.0.0/16"),
])
def test_bad_cidrs_are_refused_before_anything_changes(moto_aws, state_dir, options, words):
    before = aws_snapshot()
    result = cli("up", "--yes", *options, state_dir=state_dir)
    assert result.exit_code == 2, result.output
    assert "error:" in result.output and words in result.text
    assert aws_snapshot() == before
    assert only_default_vpc()
    assert not os.path.exists(state_dir)


@pytest.mark.parametrize("options, words", [
    (["--vpc-cidr", "8.8.0.0/16"], "is not a private (RFC 1918) range"),
    (["--public-subnets", "10.0.1.0/24,10.0.1.128/25"], "overlaps public subnet 10.0.1.0/24"),
])
def test_plan_checks_cidrs_too(moto_aws, state_dir, options, words):
    result = cli("plan", *options, state_dir=state_dir)
    assert result.exit_code == 2, result.output
    assert words in result.text


def test_good_custom_cidrs_work_and_are_remembered(moto_aws, state_dir):
    result = cli("up", "--yes", "--vpc-cidr", "172.20.0.0/16", "--public-subnets", "172.20.1.0/24,172.20.2.0/24",
                 "--private-subnets", "172.20.11.0/24,172.20.12.0/24", state_dir=state_dir)
    assert result.exit_code == 0, result.output
    assert {v["CidrBlock"] for v in ec2().describe_vpcs()["Vpcs"] if not v.get("IsDefault")} == {"172.20.0.0/16"}
    # A later command needs no shape options: they come from the state file.
    again = cli("plan", state_dir=state_dir)
    assert again.exit_code == 0, again.output
    assert "37 no change" in again.text


def test_bad_cidr_against_an_existing_stack_leaves_its_state_alone(built):
    before = dir_snapshot(built)
    result = cli("up", "--yes", "--public-subnets", "10.9.1.0/24,10.9.2.0/24", state_dir=built)
    assert result.exit_code == 2
    assert "is not inside the VPC CIDR" in result.text
    assert dir_snapshot(built) == before


@pytest.mark.parametrize("options", [
    ["--vpc-cidr", "10.1.0.0/16", "--public-subnets", "10.1.1.0/24,10.1.2.0/24",
     "--private-subnets", "10.1.11.0/24,10.1.12.0/24"],
    ["--private-subnets", "10.0.21.0/24,10.0.22.0/24"],
])
@pytest.mark.parametrize("command", ["up", "plan"])
def test_new_addresses_for_an_existing_stack_are_refused_before_anything_changes(built, options, command):
    """AWS cannot change a VPC's or subnet's CIDR in place: say so at once, rather than fail at
    the VPC step after independent steps ran."""
    before, resources = dir_snapshot(built), aws_snapshot()
    result = cli(command, "--yes", *options, state_dir=built)
    assert result.exit_code == 2, result.output
    assert "cannot change a VPC's or subnet's CIDR, or move a subnet to another zone, in place" in result.text
    assert "provision down" in result.text
    assert dir_snapshot(built) == before and aws_snapshot() == resources


def test_the_same_addresses_again_are_fine(built):
    result = cli("up", "--yes", "--vpc-cidr", "10.0.0.0/16", "--nat-per-az", state_dir=built)
    assert result.exit_code == 0, result.output


# -- credentials -------------------------------------------------------------------------------

@pytest.mark.parametrize("command", ["up", "plan", "status", "down"])
def test_missing_credentials_say_how_to_configure_them(moto_aws, state_dir, monkeypatch, command):
    before = aws_snapshot()
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY", raising=False)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    result = cli(command, "--yes" if command in ("up", "down") else "-v", state_dir=state_dir)
    assert result.exit_code == 2, result.output
    assert "no AWS credentials found" in result.text
    assert "aws configure" in result.text and "--sandbox" in result.text
    assert aws_snapshot() == before
    assert not os.path.exists(state_dir)


@pytest.mark.parametrize("code", ["ExpiredToken", "InvalidClientTokenId"])
def test_expired_token_is_refused_at_the_identity_check(moto_aws, state_dir, inject, code):
    calls = []

    def expired(model, **_):
        calls.append(model.name)
        return refuse(code, "The security token included in the request is expired", 403)

    inject("before-call.sts.GetCallerIdentity", expired)
    before = aws_snapshot()
    result = cli("up", "--yes", state_dir=state_dir)
    assert calls == ["GetCallerIdentity"]
    assert result.exit_code == 2, result.output
    assert f"the AWS credentials were refused ({code})" in result.text
    assert "is expired" in result.text
    assert "aws sso login" in result.text and "--sandbox" in result.text
    assert aws_snapshot() == before
    assert not os.path.exists(state_dir)


def test_access_denied_at_the_identity_check(moto_aws, state_dir, inject):
    inject("before-call.sts.GetCallerIdentity",
           lambda **_: refuse("AccessDenied", "User is not authorized", 403))
    result = cli("plan", state_dir=state_dir)
    assert result.exit_code == 2
    assert "access denied for sts:GetCallerIdentity" in result.text


@pytest.mark.parametrize("code, words", [
    ("ExpiredToken", "the AWS credentials were refused (ExpiredToken)"),
    ("UnauthorizedOperation", "access denied for ec2:DescribeAvailabilityZones"),
])
@pytest.mark.parametrize("command", ["up", "plan"])
def test_refusal_of_the_zone_lookup_is_a_clear_precondition_error(moto_aws, state_dir, inject, command,
                                                                  code, words):
    inject("before-call.ec2.DescribeAvailabilityZones", lambda **_: refuse(code, "Request refused", 400))
    before = aws_snapshot()
    result = cli(command, "--yes", state_dir=state_dir)
    assert result.exit_code == 2, result.output
    assert words in result.text and "Request refused" in result.text
    assert aws_snapshot() == before
    assert not os.path.exists(os.path.join(state_dir, "stylesphere.json"))


def test_other_failure_of_the_zone_lookup_is_an_aws_failure(moto_aws, state_dir, inject):
    inject("before-call.ec2.DescribeAvailabilityZones",
           lambda **_: refuse("InternalError", "An internal error has occurred", 500))
    result = cli("plan", state_dir=state_dir)
    assert result.exit_code == 1, result.output
    assert "ec2:DescribeAvailabilityZones failed with InternalError" in result.text


def test_token_expiring_after_the_preflight_changes_nothing_and_exits_2(moto_aws, state_dir, inject):
    def expired(model, **_):
        if model.name not in ("GetCallerIdentity", "DescribeAvailabilityZones", "DescribeInstanceTypes",
                              "DescribeInstanceTypeOfferings"):
            return refuse("ExpiredToken", "The security token is expired", 400)
        return None

    inject("before-call", expired)
    before = aws_snapshot()
    result = cli("up", "--yes", state_dir=state_dir)
    assert result.exit_code == 2, result.output
    assert "failed with ExpiredToken" in result.text and "invalid or expired" in result.text
    assert aws_snapshot() == before


def test_access_denied_on_create_vpc_names_the_action_and_exits_2_when_nothing_changed(
        moto_aws, state_dir, inject):
    """A policy that allows reading but no changes: every create, in every service, is refused."""
    denied = []

    def deny_changes(model, **_):
        if is_mutating(model.name):
            denied.append(model.name)
            return refuse("UnauthorizedOperation", "You are not authorized to perform this operation.", 403)
        return None

    inject("before-call", deny_changes)
    before = aws_snapshot()
    everything = {(kind, rid) for kind, rid, _ in live_resources()}
    result = cli("up", "--yes", state_dir=state_dir)
    assert "CreateVpc" in denied and "CreateBucket" in denied
    assert result.exit_code == 2, result.output
    assert "access denied for ec2:CreateVpc (UnauthorizedOperation)" in result.text
    assert "grant it in IAM" in result.text
    assert "created" not in result.text
    assert aws_snapshot() == before
    assert {(kind, rid) for kind, rid, _ in live_resources()} == everything


def test_access_denied_on_create_vpc_alone_names_it_and_exits_1_after_other_changes(
        moto_aws, state_dir, inject):
    """Steps that do not need the VPC (the Elastic IP, the internet gateway) were created: not
    'nothing changed', so this is an AWS failure (1), and the state records what exists."""
    inject("before-call.ec2.CreateVpc",
           lambda **_: refuse("AccessDenied", "You are not authorized to perform this operation.", 403))
    result = cli("up", "--yes", state_dir=state_dir)
    assert result.exit_code == 1, result.output
    assert "access denied for ec2:CreateVpc (AccessDenied)" in result.text
    assert only_default_vpc()
    saved = json.load(open(os.path.join(state_dir, "stylesphere.json")))
    assert "vpc" not in saved["resources"] and "internet-gateway" in saved["resources"]


# -- the lock ----------------------------------------------------------------------------------

def write_lock(state_dir, pid, host=None, stack="stylesphere") -> bytes:
    os.makedirs(state_dir, exist_ok=True)
    path = os.path.join(state_dir, f"{stack}.lock")
    with open(path, "w") as f:
        json.dump({"pid": pid, "host": host or socket.gethostname(), "since": "2024-05-01T10:00:00Z"}, f)
    return open(path, "rb").read()


@pytest.mark.parametrize("command", ["up", "down"])
def test_a_held_lock_is_refused_and_left_alone(moto_aws, state_dir, command):
    lock = write_lock(state_dir, os.getpid())
    before = aws_snapshot()
    result = cli(command, "--yes", state_dir=state_dir)
    assert result.exit_code == 2, result.output
    assert "stack 'stylesphere' is locked by another provision run" in result.text
    assert f"pid {os.getpid()} on {socket.gethostname()}" in result.text
    assert "stylesphere.lock" in result.text  # the hint names the lock file
    assert aws_snapshot() == before
    assert dir_snapshot(state_dir) == {"stylesphere.lock": lock}


def test_a_lock_from_another_host_is_refused(moto_aws, state_dir):
    write_lock(state_dir, 4242, host="build-box.example")
    result = cli("up", "--yes", state_dir=state_dir)
    assert result.exit_code == 2
    assert "on build-box.example" in result.text


def test_a_stale_lock_is_taken_over_with_a_warning(moto_aws, state_dir):
    proc = subprocess.Popen(["true"])
    proc.wait()
    write_lock(state_dir, proc.pid)
    result = cli("up", "--yes", state_dir=state_dir)
    assert result.exit_code == 0, result.output
    assert "warning: taking over a stale lock on stack 'stylesphere'" in result.text
    assert f"pid {proc.pid}" in result.text
    assert not os.path.exists(os.path.join(state_dir, "stylesphere.lock"))
    assert tagged_leftovers("stylesphere")


def test_read_only_commands_do_not_need_the_lock(built):
    """status and plan only read: they work while another run holds the lock."""
    write_lock(built, os.getpid())
    assert cli("status", state_dir=built).exit_code == 0
    assert cli("plan", state_dir=built).exit_code == 0


# -- foreign and corrupt state -----------------------------------------------------------------

@pytest.mark.parametrize("fields, words", [
    ({"account": "999999999999"}, "belongs to account 999999999999 in us-east-1"),
    ({"region": "eu-west-1"}, "belongs to account 123456789012 in eu-west-1"),
])
@pytest.mark.parametrize("command", ["up", "plan", "status", "down"])
def test_state_of_another_account_or_region_is_refused_untouched(moto_aws, state_dir, command, fields, words):
    write_state(state_dir, **fields)
    before_dir = dir_snapshot(state_dir)
    before = aws_snapshot()
    result = cli(command, "--yes" if command in ("up", "down") else "-v", state_dir=state_dir)
    assert result.exit_code == 2, result.output
    assert words in result.text
    assert "this run is for account 123456789012 in us-east-1" in result.text
    assert "--state-dir" in result.text
    assert dir_snapshot(state_dir) == before_dir  # byte for byte, and no backup or lock left
    assert aws_snapshot() == before


@pytest.mark.parametrize("command", ["up", "plan", "status", "outputs", "down"])
def test_corrupt_state_is_refused_with_a_hint_and_left_untouched(moto_aws, state_dir, command):
    os.makedirs(state_dir)
    path = os.path.join(state_dir, "stylesphere.json")
    with open(path, "w") as f:
        f.write('{"schema_version": 1, "resources": {')
    before_dir = dir_snapshot(state_dir)
    before = aws_snapshot()
    result = cli(command, "--yes" if command in ("up", "down") else "--json" if command == "outputs" else "-v",
                 state_dir=state_dir)
    assert result.exit_code == 2, result.output
    assert "stylesphere.json is corrupt" in result.text
    assert "hint:" in result.output and "stylesphere.json.bak" in result.text
    assert "provision down" in result.text
    assert dir_snapshot(state_dir) == before_dir
    assert aws_snapshot() == before


def test_state_of_another_schema_version_is_refused(moto_aws, state_dir):
    write_state(state_dir, schema_version=2)
    before_dir = dir_snapshot(state_dir)
    result = cli("up", "--yes", state_dir=state_dir)
    assert result.exit_code == 2
    assert "has schema version 2; this provision reads version 1" in result.text
    assert dir_snapshot(state_dir) == before_dir
    assert only_default_vpc()


def test_state_of_another_stack_is_refused(moto_aws, state_dir):
    data = write_state(state_dir, stack="other")
    os.rename(os.path.join(state_dir, "other.json"), os.path.join(state_dir, "stylesphere.json"))
    result = cli("up", "--yes", state_dir=state_dir)
    assert result.exit_code == 2
    assert "is for stack 'other', not 'stylesphere'" in result.text
    assert dir_snapshot(state_dir) == {"stylesphere.json": data}


def test_state_dir_that_is_a_file_is_refused(moto_aws, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = cli("up", "--yes", state_dir=str(blocker))
    assert result.exit_code == 2
    assert "is a file" in result.text
    assert only_default_vpc()


# -- down ---------------------------------------------------------------------------------------

def test_down_without_yes_when_not_interactive_refuses_and_deletes_nothing(built):
    before = aws_snapshot()
    before_dir = dir_snapshot(built)
    result = cli("down", state_dir=built)
    assert result.exit_code == 2
    assert "pass --yes to confirm" in result.text
    assert aws_snapshot() == before
    assert dir_snapshot(built) == before_dir


def test_down_with_yes_removes_everything(built):
    result = cli("down", "--yes", state_dir=built)
    assert result.exit_code == 0, result.output
    assert "Stack 'stylesphere' is gone (37 resources deleted)" in result.text
    assert tagged_leftovers("stylesphere") == []
    assert only_default_vpc()
    assert not os.path.exists(os.path.join(built, "stylesphere.json"))

    again = cli("down", "--yes", state_dir=built)
    assert again.exit_code == 0
    assert "had nothing left to delete" in again.text


# -- read-only commands and outputs ------------------------------------------------------------

def test_plan_before_up_shows_creates_and_creates_nothing(moto_aws, state_dir):
    before = aws_snapshot()
    result = cli("plan", state_dir=state_dir)
    assert result.exit_code == 0, result.output
    assert "37 create" in result.text and "(nothing was changed)" in result.text
    assert aws_snapshot() == before
    assert not os.path.exists(os.path.join(state_dir, "stylesphere.json"))


@pytest.mark.parametrize("as_json", [False, True])
def test_outputs_before_up_is_refused_with_a_hint(state_dir, as_json):
    result = cli("outputs", *(["--json"] if as_json else []), state_dir=state_dir)
    assert result.exit_code == 2
    assert f"stack 'stylesphere' has no outputs in {state_dir}" in result.text
    assert "run `provision up` first" in result.text
    assert result.stdout == ""


def test_outputs_json_after_up(built):
    result = cli("outputs", "--json", state_dir=built)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["vpc_id"].startswith("vpc-")
    assert data["stack"] == "stylesphere" and data["region"] == REGION and data["account"] == ACCOUNT
    assert data["nat_gateway_1_id"].startswith("nat-")


def test_outputs_as_text_after_up(built):
    result = cli("outputs", state_dir=built)
    assert result.exit_code == 0
    assert "vpc_id" in result.stdout and "vpc-" in result.stdout
    # One line per output, never wrapped, even on a narrow terminal: scripts grep these lines.
    narrow = cli("outputs", state_dir=built, env={"COLUMNS": "60"})
    lines = dict(line.split() for line in narrow.stdout.splitlines())
    assert lines == {k: str(v) for k, v in json.loads(cli("outputs", "--json", state_dir=built).stdout).items()}


def test_status_after_up_lists_every_step_present_and_changes_nothing(built):
    before = aws_snapshot()
    before_dir = dir_snapshot(built)
    result = cli("status", state_dir=built)
    assert result.exit_code == 0, result.output
    assert "37 of 37 resources present" in result.text
    for step in ("vpc", "internet-gateway", "nat-gateway-1", "public-subnet-1", "private-route-table-1"):
        assert step in result.stdout
    assert aws_snapshot() == before
    assert dir_snapshot(built) == before_dir


def test_status_json_after_up(built):
    result = cli("status", "--json", state_dir=built)
    assert result.exit_code == 0
    rows = json.loads(result.stdout)["steps"]
    assert len(rows) == 37
    assert {r["state"] for r in rows} == {"present"}
    assert next(r for r in rows if r["step"] == "vpc")["id"].startswith("vpc-")


def test_status_before_up_is_empty_and_creates_nothing(moto_aws, state_dir):
    before = aws_snapshot()
    result = cli("status", "--json", state_dir=state_dir)
    assert result.exit_code == 0, result.output
    status = json.loads(result.stdout)
    assert status["steps"] == [] and status["instances"] == [] and status["capacity"] is None
    assert aws_snapshot() == before
    assert not os.path.exists(state_dir)


def test_second_up_changes_nothing(built):
    before = aws_snapshot()
    result = cli("up", "--yes", state_dir=built)
    assert result.exit_code == 0
    assert "37 kept" in result.text
    assert aws_snapshot() == before


def test_verbose_shows_aws_calls(moto_aws, state_dir):
    result = cli("plan", "-v", state_dir=state_dir)
    assert result.exit_code == 0
    assert "sts.GetCallerIdentity -> 200" in result.text
    assert "ec2.DescribeVpcs" in result.text


# -- environment -------------------------------------------------------------------------------

def test_stack_and_state_dir_from_the_environment(moto_aws, tmp_path):
    state_dir = tmp_path / "from-env"
    result = run("up", "--yes", "--region", REGION,
                 env={"PROVISION_STACK": "lab-x", "PROVISION_STATE_DIR": str(state_dir)})
    assert result.exit_code == 0, result.output
    assert "Stack 'lab-x' is up" in result.text
    assert StateFile(state_dir, "lab-x").read().stack == "lab-x"
    assert tagged_leftovers("lab-x") and not tagged_leftovers("stylesphere")

    outputs = run("outputs", "--json", env={"PROVISION_STACK": "lab-x", "PROVISION_STATE_DIR": str(state_dir)})
    assert json.loads(outputs.stdout)["stack"] == "lab-x"


def test_options_beat_the_environment(tmp_path):
    result = run("outputs", "--stack", "lab-y", "--state-dir", tmp_path / "opt",
                 env={"PROVISION_STACK": "lab-x", "PROVISION_STATE_DIR": str(tmp_path / "env")})
    assert result.exit_code == 2
    assert f"stack 'lab-y' has no outputs in {tmp_path / 'opt'}" in result.text


def test_invalid_stack_name_from_the_environment(moto_aws, state_dir):
    result = cli("plan", state_dir=state_dir, env={"PROVISION_STACK": "Bad_Name"})
    assert result.exit_code == 2
    assert "invalid stack name 'Bad_Name'" in result.text


@pytest.mark.parametrize("value", ["abc", "0", "-1", "301", "nan"])
def test_invalid_poll_interval_is_refused(moto_aws, state_dir, value):
    before = aws_snapshot()
    result = cli("up", "--yes", state_dir=state_dir, env={"PROVISION_POLL_INTERVAL": value})
    assert result.exit_code == 2
    assert f"PROVISION_POLL_INTERVAL={value!r} is not a number of seconds" in result.text
    assert aws_snapshot() == before


@pytest.mark.parametrize("value", ["0", "-2", "nan", "inf"])
def test_invalid_timeout_scale_is_refused(moto_aws, state_dir, value):
    before = aws_snapshot()
    result = cli("up", "--yes", "--timeout-scale", value, state_dir=state_dir)
    assert result.exit_code == 2, result.output
    assert "--timeout-scale must be a finite number greater than 0" in result.text
    assert aws_snapshot() == before
    assert not os.path.exists(state_dir)


def test_non_numeric_timeout_scale_is_a_usage_error(state_dir):
    result = cli("up", "--timeout-scale", "fast", state_dir=state_dir)
    assert result.exit_code == 2
    assert "'fast' is not a valid float" in result.text


def test_unknown_option_is_a_usage_error():
    result = run("up", "--colour")
    assert result.exit_code == 2
    assert "No such option" in result.text and "--colour" in result.text
