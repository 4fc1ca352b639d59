"""What a first real account meets that moto never shows: eventual consistency in the health
wait, a network that drops, an answer that cannot be read, an AWS refusal outside a step. Each
ends as one line and an exit code, with the traceback in a crash log, never on the screen."""

from __future__ import annotations

import os

import pytest
from botocore.exceptions import EndpointConnectionError
from botocore.parsers import ResponseParserError

from test_cli import built, cli, inject, refuse, state_dir  # noqa: F401  (fixtures)


def not_yet_visible(times):
    """EC2 answers DescribeInstances for instances the group launched seconds ago with
    InvalidInstanceID.NotFound for a while (eventual consistency)."""
    def hook(params, **_):
        # The request as sent (EC2's query form): by ids, as the health wait reads them.
        wanted = (params.get("body") or {}).get("InstanceId.1")
        if wanted and hook.calls < times:
            hook.calls += 1
            return refuse("InvalidInstanceID.NotFound", f"The instance ID '{wanted}' does not exist")
        return None

    hook.calls = 0
    return hook


def test_the_health_wait_reads_again_when_a_new_instance_is_not_visible_yet(moto_aws, state_dir, inject):
    hook = not_yet_visible(2)
    inject("before-call.ec2.DescribeInstances", hook)
    result = cli("up", "--yes", state_dir=state_dir)
    assert result.exit_code == 0, result.output
    assert hook.calls == 2
    assert "2 instance(s) healthy" in result.text


def test_another_refusal_in_the_health_wait_is_a_clean_error_naming_the_call(moto_aws, state_dir, inject):
    inject("before-call.elastic-load-balancing-v2.DescribeTargetHealth",
           lambda **_: refuse("UnauthorizedOperation", "You are not authorized to perform this operation.", 403))
    result = cli("up", "--yes", state_dir=state_dir)
    assert result.exit_code == 1, result.output
    assert "DescribeTargetHealth failed while waiting for the instances to turn healthy" in result.text
    assert "UnauthorizedOperation" in result.text


def crash_log(state_dir, stack="stylesphere") -> str:
    path = os.path.join(state_dir, f"{stack}.crash.log")
    assert os.path.isfile(path), os.listdir(state_dir)
    return open(path, encoding="utf-8").read()


def dropped(**kwargs):
    raise EndpointConnectionError(endpoint_url="https://elasticloadbalancing.us-east-1.amazonaws.com/")


def test_a_dropped_network_is_one_line_and_a_crash_log(built, inject):
    inject("before-call.elastic-load-balancing-v2.DescribeTargetHealth", dropped)
    result = cli("status", state_dir=built)
    assert result.exit_code == 1
    assert "status stopped: the connection to AWS failed (EndpointConnectionError)" in result.text
    assert "Could not connect to the endpoint URL" in result.text
    log = crash_log(built)
    assert "Traceback (most recent call last)" in log and "EndpointConnectionError" in log
    assert os.path.join(built, "stylesphere.crash.log") in result.text.replace(" ", "") or "crash.log" in result.text


def test_an_unreadable_answer_is_one_line_and_a_crash_log(built, inject):
    def garbled(**_):
        raise ResponseParserError("Unable to parse response (not well-formed (invalid token): line 1, column 0)")

    inject("before-call.autoscaling.DescribeAutoScalingGroups", garbled)
    result = cli("status", state_dir=built)
    assert result.exit_code == 1
    assert "AWS sent an answer that could not be read" in result.text
    assert "ResponseParserError" in crash_log(built)


def test_a_refusal_outside_a_step_is_one_line_naming_the_operation(built, inject):
    inject("before-call.autoscaling.DescribeAutoScalingGroups",
           lambda **_: refuse("InternalFailure", "We encountered an internal error. Please try again.", 500))
    result = cli("status", state_dir=built)
    assert result.exit_code == 1
    assert "DescribeAutoScalingGroups was refused: InternalFailure" in result.text
    assert "InternalFailure" in crash_log(built)


def test_a_bug_is_one_line_a_crash_log_and_the_state_kept(built, monkeypatch):
    from provisioner.commands import runner

    state = open(os.path.join(built, "stylesphere.json"), "rb").read()

    def broken(*args, **kwargs):
        raise ValueError("something the code did not expect")

    monkeypatch.setattr(runner, "report_cost", broken)
    result = cli("up", "--yes", state_dir=built)
    assert result.exit_code == 1
    assert "up stopped: unexpected error (ValueError: something the code did not expect)" in result.text
    assert "this is a bug in provision" in result.text
    assert 'raise ValueError("something the code did not expect")' in crash_log(built)
    # The run had finished its steps: the state file is as complete as before.
    assert open(os.path.join(built, "stylesphere.json"), "rb").read().count(b'"id"') >= state.count(b'"id"')


def test_a_crash_where_the_state_directory_cannot_be_written_goes_to_the_temporary_directory(tmp_path):
    from provisioner.commands.connection import write_crash_log

    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    try:
        raise RuntimeError("boom")
    except RuntimeError as e:
        path = write_crash_log(e, "status", str(blocked), "demo")
    assert os.path.isfile(path) and "boom" in open(path).read()
    os.remove(path)


# -- zones ---------------------------------------------------------------------------------------

def subnet_zones() -> dict[str, str]:
    import boto3

    subnets = boto3.client("ec2", region_name="us-east-1").describe_subnets()["Subnets"]
    return {tag["Value"]: s["AvailabilityZone"] for s in subnets for tag in s.get("Tags", [])
            if tag["Key"] == "provision:step"}


def without_zone(zone):
    """Which zones offer a type differs per account: here `zone` offers none of them."""
    def hook(parsed, **_):
        parsed["InstanceTypeOfferings"] = [o for o in parsed.get("InstanceTypeOfferings", [])
                                           if o.get("Location") != zone]
    return hook


def test_the_stack_takes_the_first_two_zones_that_offer_the_instance_type(moto_aws, state_dir, inject):
    inject("after-call.ec2.DescribeInstanceTypeOfferings", without_zone("us-east-1a"))
    result = cli("up", "--yes", "--no-wait", state_dir=state_dir)
    assert result.exit_code == 0, result.output
    zones = subnet_zones()
    assert zones["public-subnet-1"] == zones["private-subnet-1"] == "us-east-1b"
    assert zones["public-subnet-2"] == zones["private-subnet-2"] == "us-east-1c"


def test_zones_given_are_used_and_remembered(moto_aws, state_dir):
    import json

    result = cli("up", "--yes", "--no-wait", "--zones", "us-east-1d,us-east-1b", state_dir=state_dir)
    assert result.exit_code == 0, result.output
    assert subnet_zones()["public-subnet-1"] == "us-east-1d" and subnet_zones()["private-subnet-2"] == "us-east-1b"
    state = json.load(open(os.path.join(state_dir, "stylesphere.json")))
    assert state["config"]["zones"] == ["us-east-1d", "us-east-1b"]
    # Remembered: a later `up` needs no --zones and changes nothing.
    again = cli("up", "--yes", "--no-wait", state_dir=state_dir)
    assert again.exit_code == 0 and " kept in " in again.text
    assert not any(word in again.text for word in (" created", " updated", " replaced"))
    # Subnets cannot move to other zones: refused before anything changes.
    moved = cli("up", "--yes", "--no-wait", "--zones", "us-east-1a,us-east-1b", state_dir=state_dir)
    assert moved.exit_code == 2
    assert "--zones ['us-east-1d', 'us-east-1b'] -> ['us-east-1a', 'us-east-1b']" in moved.text


def test_a_zone_that_does_not_offer_the_type_is_refused_before_anything_is_built(moto_aws, state_dir, inject):
    inject("after-call.ec2.DescribeInstanceTypeOfferings", without_zone("us-east-1c"))
    result = cli("up", "--yes", "--zones", "us-east-1a,us-east-1c", state_dir=state_dir)
    assert result.exit_code == 2, result.output
    assert "instance type t3.micro is not offered in us-east-1c" in result.text
    assert subnet_zones() == {}


@pytest.mark.parametrize("zones, words", [
    ("us-east-1a", "takes 2 different comma-separated zone names"),
    ("us-east-1a,us-east-1a", "takes 2 different comma-separated zone names"),
    ("us-east-1a,not a zone", "'not a zone' is not a zone name"),
    ("us-east-1a,us-east-1z", "us-east-1z are not available zones of us-east-1"),
    ("eu-west-1a,us-east-1b", "eu-west-1a are not available zones of us-east-1"),
])
def test_bad_zones_are_refused_with_exit_2(moto_aws, state_dir, zones, words):
    result = cli("up", "--yes", "--zones", zones, state_dir=state_dir)
    assert result.exit_code == 2, result.output
    assert words in result.text
    assert subnet_zones() == {}


def test_zones_from_a_stack_file_and_a_bad_one_named_by_its_line(moto_aws, state_dir, tmp_path):
    path = tmp_path / "stack.toml"
    path.write_text('stack = "stylesphere"\nzones = ["us-east-1c", "us-east-1d"]\n')
    result = cli("plan", "-f", str(path), state_dir=state_dir)
    assert result.exit_code == 0, result.output
    path.write_text('stack = "stylesphere"\n\nzones = ["us-east-1c"]\n')
    bad = cli("up", "--yes", "-f", str(path), state_dir=state_dir)
    assert bad.exit_code == 2
    assert "line 3" in bad.text and "zone names" in bad.text
    assert subnet_zones() == {}
