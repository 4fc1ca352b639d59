"""Never touch what is not ours. Two stacks built through the CLI with the strict fixture, then
stack B's ids put into stack A's state file (a copied state directory, a hand edit, a restored
backup): every command on A refuses (exit 2) before it changes anything, and B is left exactly as
it was: the same resources, with the same tags."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest

from provisioner.engine.context import TAG_STACK, is_mutating

from stacks import REGION, live_resources
from test_cli import cli, refuse, state_dir  # noqa: F401  (fixtures)
from test_fleet import calls, hooks  # noqa: F401  (fixtures)


def snapshot(stack: str) -> set[tuple[str, str, tuple]]:
    """Every live resource of the stack, with all its tags."""
    return {(kind, rid, tuple(sorted(tags.items()))) for kind, rid, tags in live_resources()
            if tags.get(TAG_STACK) == stack}


def swap_in(state_dir, into: str, source: str, steps=None) -> list[str]:
    """Put `source`'s ids (and attributes) into `into`'s state file; the steps swapped."""
    target_path = Path(state_dir) / f"{into}.json"
    target = json.loads(target_path.read_text())
    theirs = json.loads((Path(state_dir) / f"{source}.json").read_text())["resources"]
    swapped = [name for name in theirs if steps is None or name in steps]
    for name in swapped:
        target["resources"][name] = theirs[name]
    target_path.write_text(json.dumps(target))
    return swapped


def mutating(calls, stack):
    return [op for s, op in calls if s == stack and is_mutating(op)]


@pytest.fixture
def two_stacks(hooks, state_dir, calls):  # noqa: F811
    for name in ("a", "b"):
        built = cli("up", "--stack", name, "--no-wait", state_dir=state_dir)
        assert built.exit_code == 0, built.output
    before = {name: snapshot(name) for name in ("a", "b")}
    assert len(before["b"]) >= 25
    return before


@pytest.mark.parametrize("command", [["down", "--yes"], ["up", "--no-wait"], ["status"], ["plan"],
                                     ["scale", "3", "--no-wait"]])
def test_another_stacks_ids_in_the_state_are_refused_and_left_alone(two_stacks, state_dir, calls,  # noqa: F811
                                                                    command):
    swapped = swap_in(state_dir, "a", "b")
    assert len(swapped) >= 25
    calls.clear()
    result = cli(*command, "--stack", "a", state_dir=state_dir)
    assert result.exit_code == 2, result.output
    assert "belongs to stack 'b'" in result.text
    assert "refusing to adopt, change or delete it" in result.text
    assert mutating(calls, "a") == []
    assert snapshot("b") == two_stacks["b"]
    assert snapshot("a") == two_stacks["a"]


def test_down_names_every_foreign_resource_and_deletes_none(two_stacks, state_dir, calls):  # noqa: F811
    swap_in(state_dir, "a", "b", steps={"vpc", "load-balancer", "auto-scaling-group", "launch-template",
                                        "frontend-target-group", "instance-role", "assets-bucket"})
    calls.clear()
    result = cli("down", "--yes", "--stack", "a", state_dir=state_dir)
    assert result.exit_code == 2, result.output
    assert "7 resources the state file names are not this stack's; nothing was changed" in result.text
    for what in ("vpc vpc-", "load_balancer arn:", "Auto Scaling Group b-web", "launch template lt-",
                 "bucket b-assets-", "IAM b-us-east-1-web"):
        assert what in result.text, what
    assert mutating(calls, "a") == []
    assert snapshot("b") == two_stacks["b"]
    # With the foreign file moved aside, `down` finds A's own resources by their tags, and only those.
    (Path(state_dir) / "a.json").rename(Path(state_dir) / "a.json.bak")
    gone = cli("down", "--yes", "--stack", "a", state_dir=state_dir)
    assert gone.exit_code == 0, gone.output
    assert snapshot("a") == set()
    assert snapshot("b") == two_stacks["b"]


def test_an_untagged_resource_in_the_state_is_nobodys_and_refused(two_stacks, state_dir, calls):  # noqa: F811
    """A VPC made by hand, its id written into the state: neither adopted by `up` nor deleted by
    `down`."""
    ec2 = boto3.client("ec2", region_name=REGION)
    theirs = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    path = Path(state_dir) / "a.json"
    state = json.loads(path.read_text())
    state["resources"]["vpc"]["id"] = theirs
    path.write_text(json.dumps(state))
    calls.clear()
    for command in (["up", "--no-wait"], ["down", "--yes"]):
        result = cli(*command, "--stack", "a", state_dir=state_dir)
        assert result.exit_code == 2, result.output
        assert f"{theirs} belongs to no stack: it carries none of provision's tags" in result.text
    assert mutating(calls, "a") == []
    assert ec2.describe_vpcs(VpcIds=[theirs])["Vpcs"][0].get("Tags", []) == []
    assert snapshot("a") == two_stacks["a"]


def test_an_id_of_another_step_of_the_same_stack_is_refused(two_stacks, state_dir, calls):  # noqa: F811
    """A hand edit that put the public subnet's id under the private subnet's step: adopting it
    would re-tag it as the private subnet and route it through the NAT gateway."""
    path = Path(state_dir) / "a.json"
    state = json.loads(path.read_text())
    state["resources"]["private-subnet-1"] = state["resources"]["public-subnet-1"]
    path.write_text(json.dumps(state))
    calls.clear()
    result = cli("up", "--no-wait", "--stack", "a", state_dir=state_dir)
    assert result.exit_code == 2, result.output
    assert "this stack's step 'public-subnet-1', not 'private-subnet-1'" in result.text
    assert mutating(calls, "a") == []
    assert snapshot("a") == two_stacks["a"]


def test_an_untagged_bucket_with_a_stacks_name_stops_up_and_plan_and_survives_down(hooks, state_dir,  # noqa: F811
                                                                                  calls):
    s3 = boto3.client("s3", region_name=REGION)
    bucket = f"ghost-assets-123456789012-{REGION}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="their-data.csv", Body=b"precious")
    for command in (["up", "--no-wait"], ["plan"]):
        calls.clear()
        result = cli(*command, "--stack", "ghost", state_dir=state_dir)
        assert result.exit_code == 2, result.output
        assert f"a bucket named {bucket} exists in this account and is no stack's" in result.text
        assert mutating(calls, "ghost") == []
    assert snapshot("ghost") == set()
    down = cli("down", "--yes", "--stack", "ghost", state_dir=state_dir)
    assert down.exit_code == 0, down.output
    assert "0 resources left" in down.text
    assert s3.get_object(Bucket=bucket, Key="their-data.csv")["Body"].read() == b"precious"


# -- `down` is done when a fresh scan says so ------------------------------------------------------

def test_a_dependencys_not_found_is_not_the_group_deleted_and_down_names_what_is_left(hooks, state_dir):  # noqa: F811
    built = cli("up", "--stack", "a", "--no-wait", state_dir=state_dir)
    assert built.exit_code == 0, built.output
    # A target group the group still names has gone: that "not found" is about the target
    # group, and the Auto Scaling Group is still there.
    hooks.append(("before-call.autoscaling.DeleteAutoScalingGroup",
                  lambda **_: refuse("TargetGroupNotFound", "One or more target groups not found")))
    result = cli("down", "--yes", "--stack", "a", state_dir=state_dir)
    assert result.exit_code == 1, result.output
    assert "TargetGroupNotFound" in result.text
    # What the group holds up (its subnets, the VPC, ...) is left too, and said so.
    assert "auto_scaling_group a-web (step auto-scaling-group)" in result.text
    assert f"`down` left {len(snapshot('a'))} resource(s) of stack 'a'" in result.text
    assert "is gone" not in result.text
    hooks.clear()
    again = cli("down", "--yes", "--stack", "a", state_dir=state_dir)
    assert again.exit_code == 0, again.output
    assert "0 resources left (a fresh scan of the stack's tags)" in again.text
    assert snapshot("a") == set()


def test_a_delete_that_answers_success_but_leaves_the_resource_fails_down(hooks, state_dir):  # noqa: F811
    built = cli("up", "--stack", "a", "--no-wait", state_dir=state_dir)
    assert built.exit_code == 0, built.output

    class Http:
        status_code, headers, content = 200, {}, b""

    # Every delete call returned, yet the launch template is still there.
    hooks.append(("before-call.ec2.DeleteLaunchTemplate", lambda **_: (Http(), {"ResponseMetadata": {}})))
    result = cli("down", "--yes", "--stack", "a", state_dir=state_dir)
    assert result.exit_code == 1, result.output
    assert "1 resource(s) left" in result.text
    assert "launch_template lt-" in result.text
    assert "is gone" not in result.text
