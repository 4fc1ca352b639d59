"""The compute and edge tier through the CLI, in-process on moto: bad inputs refused before
anything changes, the wait for healthy targets (with the target health AWS reports, injected),
`scale`, `logs`, and what `status` and `outputs` add."""

from __future__ import annotations

import base64
import json
import os

import boto3
import pytest

from stacks import REGION, live_resources
from test_cli import cli, inject, run, state_dir  # noqa: F401  (fixtures)

CERT_ARN = "arn:aws:acm:{region}:123456789012:certificate/0b0e3c41-7d1c-4b5e-9a6a-2f5b1c7d9e01"


def snapshot() -> set[tuple[str, str]]:
    """Every resource of every type the stack makes (moto's defaults included)."""
    return {(kind, rid) for kind, rid, _ in live_resources()}


@pytest.fixture
def built(moto_aws, state_dir):  # noqa: F811
    result = cli("up", "--yes", state_dir=state_dir)
    assert result.exit_code == 0, result.output
    return state_dir


# -- bad input: exit 2, a clear message, nothing created ---------------------------------------

@pytest.mark.parametrize("options, words", [
    (["--instance-type", "t3.huge"], "instance type 't3.huge' does not exist in us-east-1"),
    (["--instance-type", "T3 Micro"], "invalid instance type 'T3 Micro'"),
    (["--desired", "5"], "--desired 5 is outside --min 1 .. --max 4"),
    (["--desired", "0", "--min", "1"], "--desired 0 is outside --min 1 .. --max 4"),
    (["--min", "3", "--max", "2", "--desired", "2"], "--min 3 is larger than --max 2"),
    (["--min", "-1"], "--min must be a whole number of instances, 0 or more"),
    (["--max", "0", "--min", "0", "--desired", "0"], "--max must be at least 1"),
    (["--grace-period", "60"], "--grace-period 60 must be 240 to 7200 seconds"),
    (["--domain", "not a domain"], "invalid domain 'not a domain'"),
    (["--domain", "-shop.example.com"], "invalid domain '-shop.example.com'"),
    (["--domain", "localhost"], "invalid domain 'localhost'"),
    (["--domain", "Shop.Example.com"], "invalid domain 'Shop.Example.com'"),
    (["--domain", "a" * 60 + ".example.com"], "a certificate's Common Name holds at most 64"),
    (["--ami", "ami-12"], "invalid AMI id 'ami-12'"),
    (["--ami", "ami-0123456789abcdef0"], "AMI ami-0123456789abcdef0 does not exist in us-east-1"),
    (["--certificate-arn", "not-an-arn"], "invalid certificate ARN 'not-an-arn'"),
    (["--certificate-arn", CERT_ARN.format(region="eu-west-1")], "eu-west-1"),
    (["--certificate-arn", CERT_ARN.format(region=REGION)], "0b0e3c41-7d1c-4b5e-9a6a-2f5b1c7d9e01"),
])
def test_bad_compute_options_are_refused_before_anything_changes(moto_aws, state_dir, options, words):  # noqa: F811
    before = snapshot()
    result = cli("up", "--yes", *options, state_dir=state_dir)
    assert result.exit_code == 2, result.output
    assert "error:" in result.output and words in result.text, result.text
    assert snapshot() == before
    assert not os.path.exists(os.path.join(state_dir, "stylesphere.json"))


def test_plan_checks_compute_options_too(moto_aws, state_dir):  # noqa: F811
    result = cli("plan", "--instance-type", "t3.huge", state_dir=state_dir)
    assert result.exit_code == 2 and "does not exist" in result.text


@pytest.mark.parametrize("args, words", [
    (["scale", "-1"], "-1 is not in the range x>=0"),
    (["scale", "two"], "'two' is not a valid integer"),
    (["logs", "not-an-id"], "invalid instance id 'not-an-id'"),
])
def test_bad_arguments_of_scale_and_logs(moto_aws, state_dir, args, words):  # noqa: F811
    result = cli(*args, state_dir=state_dir)
    assert result.exit_code == 2, result.output
    assert words in result.text


def test_scale_before_up_says_to_run_up(moto_aws, state_dir):  # noqa: F811
    result = cli("scale", "2", state_dir=state_dir)
    assert result.exit_code == 2
    assert "has no state" in result.text and "provision up" in result.text


# -- up: the URL, outputs and status ------------------------------------------------------------

def test_up_ends_with_the_url_and_outputs_have_the_app_ids(built):
    out = json.loads(cli("outputs", "--json", state_dir=built).stdout)
    for key in ("url", "alb_dns_name", "bucket", "images_base_url", "asg_name", "certificate_arn"):
        assert out.get(key), (key, out)
    assert out["url"] == f"https://{out['alb_dns_name']}"
    assert out["images_base_url"].endswith("/images/")
    again = cli("up", "--yes", state_dir=built)
    assert again.exit_code == 0
    assert out["url"] in again.text
    assert "self-signed" in again.text


def test_status_shows_target_health_and_instances_per_zone(built):
    result = cli("status", state_dir=built)
    assert result.exit_code == 0, result.output
    assert "instances (desired 2, min 1, max 4)" in result.text
    assert "instances per zone:" in result.text and "healthy" in result.text
    data = json.loads(cli("status", "--json", state_dir=built).stdout)
    assert len(data["instances"]) == 2
    for item in data["instances"]:
        assert item["state"] == "healthy"
        assert set(item["targets"]) == {"frontend", "backend"}
    assert data["capacity"] == {"desired": 2, "min": 1, "max": 4}
    # One per zone, as an Auto Scaling Group balances them (the emulator does too).
    assert data["zones"] == {"us-east-1a": {"healthy": 1}, "us-east-1b": {"healthy": 1}}
    assert "us-east-1a: 1 healthy; us-east-1b: 1 healthy" in result.text


# -- the wait for healthy targets -----------------------------------------------------------------

class TargetHealthSequence:
    """Answers DescribeTargetHealth as AWS does during a first boot: `initial` for a while, then
    `unhealthy` (the app is still building: 502), then healthy, or unhealthy for ever."""

    def __init__(self, phases):
        self.phases = list(phases)  # [(calls, state, reason, description)], the last one repeats
        self.calls = 0

    def __call__(self, parsed, **_):
        self.calls += 1
        budget, state = self.calls, None
        for count, state, reason, description in self.phases:
            if budget <= count:
                break
            budget -= count
        for d in parsed.get("TargetHealthDescriptions", []):
            d["TargetHealth"] = {"State": state, **({"Reason": reason} if reason else {}),
                                 **({"Description": description} if description else {})}


def test_up_waits_through_bootstrapping_until_targets_are_healthy(moto_aws, state_dir, inject):  # noqa: F811
    sequence = TargetHealthSequence([
        (4, "initial", "Elb.InitialHealthChecking", "Initial health checks in progress"),
        (4, "unhealthy", "Target.ResponseCodeMismatch", "Health checks failed with these codes: [502]"),
        (1, "healthy", "", ""),
    ])
    inject("after-call.elastic-load-balancing-v2.DescribeTargetHealth", sequence)
    result = cli("up", "--yes", state_dir=state_dir)
    assert result.exit_code == 0, result.output
    assert "bootstrapping" in result.text and "healthy" in result.text
    assert "2 instance(s) healthy" in result.text
    assert sequence.calls > 8


def test_no_wait_skips_the_health_wait(moto_aws, state_dir, inject):  # noqa: F811
    sequence = TargetHealthSequence([(1, "unhealthy", "Target.Timeout", "Request timed out")])
    inject("after-call.elastic-load-balancing-v2.DescribeTargetHealth", sequence)
    result = cli("up", "--yes", "--no-wait", state_dir=state_dir)
    assert result.exit_code == 0, result.output
    assert sequence.calls == 0
    assert "https://" in result.text


def test_unhealthy_targets_time_out_naming_each_target_and_aws_reason(moto_aws, state_dir, inject):  # noqa: F811
    inject("after-call.elastic-load-balancing-v2.DescribeTargetHealth", TargetHealthSequence(
        [(1, "unhealthy", "Target.ResponseCodeMismatch", "Health checks failed with these codes: [502]")]))
    console = "cloud-init...\nprovision-bootstrap: step=build\nPROVISION-BOOTSTRAP-FAILED step=build\n"

    def failed_console(parsed, **_):
        parsed["Output"] = base64.b64encode(console.encode()).decode()

    inject("after-call.ec2.GetConsoleOutput", failed_console)
    result = cli("up", "--yes", "--grace-period", "300", "--timeout-scale", "0.002", state_dir=state_dir)
    assert result.exit_code == 1, result.output
    assert "0 of 2 instances healthy" in result.text
    assert "Target.ResponseCodeMismatch" in result.text and "[502]" in result.text
    assert "bootstrap failed step=build" in result.text
    assert "provision logs" in result.text
    # The stack itself is up: status shows it, and down removes it.
    assert cli("down", "--yes", state_dir=state_dir).exit_code == 0


# -- scale ----------------------------------------------------------------------------------------

def _group():
    return boto3.client("autoscaling", region_name=REGION).describe_auto_scaling_groups()["AutoScalingGroups"][0]


def test_scale_to_zero_stops_the_compute_and_up_keeps_it(built):
    result = cli("scale", "0", state_dir=built)
    assert result.exit_code == 0, result.output
    group = _group()
    assert (group["MinSize"], group["DesiredCapacity"], group["MaxSize"]) == (0, 0, 4)
    assert "minimum 1 -> 0" in result.text
    assert "No instances run" in result.text
    # The stack stays: only the compute stopped; a later `up` keeps the size.
    plan = cli("plan", state_dir=built)
    assert "auto-scaling-group" in plan.text and "1 update" not in plan.text
    assert cli("up", "--yes", state_dir=built).exit_code == 0
    assert _group()["DesiredCapacity"] == 0

    back = cli("scale", "3", state_dir=built)
    assert back.exit_code == 0, back.output
    assert _group()["DesiredCapacity"] == 3
    assert "3 instance(s) healthy" in back.text


def test_scale_above_the_maximum_raises_it(built):
    result = cli("scale", "6", "--no-wait", state_dir=built)
    assert result.exit_code == 0, result.output
    group = _group()
    assert (group["DesiredCapacity"], group["MaxSize"]) == (6, 6)
    assert "maximum 4 -> 6" in result.text
    state = json.load(open(os.path.join(built, "stylesphere.json")))
    assert state["config"]["desired_capacity"] == 6 and state["config"]["max_size"] == 6


def test_scale_to_the_current_size_says_so(built):
    result = cli("scale", "2", state_dir=built)
    assert result.exit_code == 0
    assert "Already at 2 instance(s)" in result.text


# -- logs -----------------------------------------------------------------------------------------

def test_logs_prints_the_console_and_the_bootstrap_marker(built, inject):  # noqa: F811
    console = "boot...\nprovision-bootstrap: step=health\nPROVISION-BOOTSTRAP-OK\n"
    inject("after-call.ec2.GetConsoleOutput",
           lambda parsed, **_: parsed.update(Output=base64.b64encode(console.encode()).decode()))
    result = cli("logs", state_dir=built)
    assert result.exit_code == 0, result.output
    assert "provision-bootstrap: step=health" in result.stdout
    assert "the bootstrap finished" in result.text

    instance = json.loads(cli("status", "--json", state_dir=built).stdout)["instances"][1]["id"]
    named = cli("logs", instance, state_dir=built)
    assert named.exit_code == 0 and "PROVISION-BOOTSTRAP-OK" in named.stdout


def test_logs_of_an_unknown_instance_is_a_clear_error(built):
    result = cli("logs", "i-0123456789abcdef0", state_dir=built)
    assert result.exit_code == 2, result.output
    assert "no instance i-0123456789abcdef0" in result.text


def test_logs_with_no_instances_says_how_to_start_some(built):
    assert cli("scale", "0", state_dir=built).exit_code == 0
    result = cli("logs", state_dir=built)
    assert result.exit_code == 2
    assert "has no instances running" in result.text and "provision scale" in result.text


def test_help_of_the_new_commands(moto_aws):
    for command in ("scale", "logs"):
        result = run(command, "--help")
        assert result.exit_code == 0 and "--stack" in result.output


def test_ctrl_c_during_the_wait_stops_only_the_waiting(moto_aws, state_dir, inject):  # noqa: F811
    polls = []

    def unhealthy_then_ctrl_c(parsed, **_):
        polls.append(1)
        if len(polls) > 3:
            raise KeyboardInterrupt
        for d in parsed.get("TargetHealthDescriptions", []):
            d["TargetHealth"] = {"State": "initial", "Reason": "Elb.InitialHealthChecking"}

    inject("after-call.elastic-load-balancing-v2.DescribeTargetHealth", unhealthy_then_ctrl_c)
    result = cli("up", "--yes", state_dir=state_dir)
    assert result.exit_code == 130, result.output
    assert "stopped waiting; nothing was undone" in result.text
    # The stack is whole and saved: a second `up` keeps everything.
    state = json.load(open(os.path.join(state_dir, "stylesphere.json")))
    assert "auto-scaling-group" in state["resources"] and state["outputs"]["url"]


def test_access_denied_in_the_compute_preflight_names_the_action(moto_aws, state_dir, inject):  # noqa: F811
    from test_cli import refuse

    inject("before-call.ec2.DescribeInstanceTypeOfferings",
           lambda **_: refuse("UnauthorizedOperation", "You are not authorized to perform this operation.", 403))
    before = snapshot()
    result = cli("up", "--yes", state_dir=state_dir)
    assert result.exit_code == 2, result.output
    assert "access denied for ec2:DescribeInstanceTypeOfferings" in result.text
    assert snapshot() == before


def test_instances_that_never_launch_are_named_with_the_groups_own_reason(moto_aws, state_dir, inject):  # noqa: F811
    """No capacity (or an unusable image) in AWS: the group has fewer instances than desired, and
    its scaling activity says why."""
    def one_instance_only(parsed, **_):
        for group in parsed.get("AutoScalingGroups", []):
            group["Instances"] = group.get("Instances", [])[:1]

    def failed_activity(parsed, **_):
        parsed["Activities"] = [{
            "ActivityId": "a1", "AutoScalingGroupName": "stylesphere-web", "StatusCode": "Failed",
            "Description": "Launching a new EC2 instance", "Cause": "capacity",
            "StatusMessage": "We currently do not have sufficient t3.micro capacity in us-east-1b "
                             "(InsufficientInstanceCapacity)", "StartTime": "2026-11-22T00:00:00Z"}]

    inject("after-call.auto-scaling.DescribeAutoScalingGroups", one_instance_only)
    inject("after-call.auto-scaling.DescribeScalingActivities", failed_activity)
    result = cli("up", "--yes", "--grace-period", "300", "--timeout-scale", "0.002", state_dir=state_dir)
    assert result.exit_code == 1, result.output
    assert "1 of 2 instances healthy" in result.text
    assert "only 1 of 2 instances launched" in result.text
    assert "InsufficientInstanceCapacity" in result.text
