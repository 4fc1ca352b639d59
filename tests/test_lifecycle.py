"""The whole lifecycle on moto with the strict fixture: up, a second up that changes nothing,
down, a second down that is a no-op, and the recoveries (lost state, crash at any call)."""

from __future__ import annotations

import dataclasses
import time

import pytest

from stacks import count_tagged, outcomes, tagged_leftovers
from provisioner.shape.config import StackConfig
from provisioner.engine.errors import Interrupted

from provisioner.engine.registry import build_steps

ALL_STEPS = len(build_steps(StackConfig(zones=["us-east-1a", "us-east-1b"])))


def test_up_creates_everything_then_second_up_changes_nothing(make_stack):
    stack = make_stack()
    first = stack.up()
    assert set(outcomes(first).values()) == {"created"}, outcomes(first)
    assert len(first) == ALL_STEPS

    second = stack.up()
    assert set(outcomes(second).values()) == {"kept"}, [(r.name, r.outcome, r.detail) for r in second]
    assert stack.mutating_calls() == []
    # About one read per resource: a few steps need a second (the VPC's DNS attributes).
    assert len(stack.last_ctx.calls) <= 2 * ALL_STEPS


def test_down_removes_everything_and_second_down_is_a_no_op(make_stack, strict):
    stack = make_stack()
    stack.up()
    assert tagged_leftovers("stylesphere")
    results = stack.down()
    assert sum(r.outcome == "deleted" for r in results) == ALL_STEPS
    # The rest are the optional steps of --nat-per-az, looked for in case the stack had them.
    assert {r.outcome for r in results} == {"deleted", "absent"}, [(r.name, r.outcome, r.detail) for r in results]
    assert tagged_leftovers("stylesphere") == []
    assert not stack.state_file.exists()

    again = stack.down()
    assert set(outcomes(again).values()) == {"absent"}
    assert stack.mutating_calls() == []


def test_teardown_meets_real_aws_refusals_and_waits_them_out(make_stack, strict):
    """The NAT gateway takes time to go, and its address and interface linger after it: the
    teardown must wait (and retry DependencyViolation) rather than fail or skip ahead."""
    strict.delays.nat_delete = 0.4
    strict.delays.eni_release = 0.4
    stack = make_stack()
    stack.up()
    results = stack.down()
    assert all(r.ok for r in results), [(r.name, r.outcome, r.detail) for r in results]
    assert tagged_leftovers("stylesphere") == []
    # The subnet was refused while the deleted NAT gateway's interface lingered, and retried.
    assert ("DeleteSubnet", "DependencyViolation", "lingering") in strict.refusals
    # Nothing was ever deleted before what depends on it.
    assert [r for r in strict.refusals if r[2] == "order"] == []
    # The address was not released while still held: the tool waited instead of being refused.
    assert not [r for r in strict.refusals if r[0] == "ReleaseAddress"]


def test_whole_stack_teardown_waits_for_what_aws_is_slow_to_release(make_stack, strict):
    """The compute and edge tier on top: instances take time to terminate, the load balancer's
    interfaces linger after it is gone, ACM counts a deleted listener for a while, and a new
    instance profile is refused for seconds. Everything is waited out, nothing is deleted out of
    order, nothing is left."""
    strict.hold_profile_new()
    stack = make_stack()
    assert all(r.ok for r in stack.up())
    results = stack.down()
    assert all(r.ok for r in results), [(r.name, r.outcome, r.detail) for r in results]
    assert tagged_leftovers("stylesphere") == []
    assert [r for r in strict.refusals if r[2] == "order"] == []
    met = {(op, kind) for op, _, kind in strict.refusals}
    # The profile was too new for the group at first, and the subnets and groups were refused
    # while the load balancer's interfaces lingered: each was retried until AWS let go.
    assert ("CreateAutoScalingGroup", "lingering") in met, strict.refusals
    assert any(op in ("DeleteSubnet", "DeleteSecurityGroup") for op, kind in met if kind == "lingering")


def test_nat_gateway_creation_is_waited_for(make_stack, strict):
    strict.delays.nat_create = 0.3
    stack = make_stack()
    results = {r.name: r for r in stack.up()}
    assert results["nat-gateway-1"].outcome == "created"
    assert results["nat-gateway-1"].seconds >= 0.3
    describe_calls = [c for c in stack.last_ctx.calls if c[1] == "DescribeNatGateways"]
    assert len(describe_calls) >= 3  # polled, not slept through


def test_down_finds_everything_by_tags_without_state(make_stack):
    stack = make_stack()
    stack.up()
    stack.state_file.remove()
    results = stack.down()
    assert sum(r.outcome == "deleted" for r in results) == ALL_STEPS
    assert tagged_leftovers("stylesphere") == []


def test_down_by_tags_deletes_a_route_table_only_after_every_subnet_on_it(make_stack, strict):
    """Without state, `down` has every option's steps, so it expects private subnet 2 on private
    table 2 (--nat-per-az); a stack built with one NAT gateway has it on table 1. Table 1 must
    still wait for that association to go: AWS refuses to delete a table with associations."""
    held = {}

    def slow_second_disassociation(params, **_):
        if params.get("body", {}).get("AssociationId") == held.get("id"):
            time.sleep(0.5)

    stack = make_stack(hooks=[("before-call.ec2.DisassociateRouteTable", slow_second_disassociation)])
    stack.up()
    held["id"] = stack.last_ctx.resources["private-subnet-2-association"].id
    stack.state_file.remove()
    results = stack.down()
    assert sum(r.outcome == "deleted" for r in results) == ALL_STEPS
    assert [r for r in strict.refusals if r[2] == "order"] == []
    assert tagged_leftovers("stylesphere") == []


def test_up_without_state_adopts_instead_of_duplicating(make_stack):
    stack = make_stack()
    stack.up()
    stack.state_file.remove()
    results = stack.up()
    assert set(outcomes(results).values()) == {"kept"}
    assert all(n == 1 for n in count_tagged("stylesphere").values())


def test_stacks_do_not_see_each_other(make_stack):
    a, b = make_stack("lab-a"), make_stack("lab-b", config=StackConfig(
        vpc_cidr="10.1.0.0/16", public_subnet_cidrs=["10.1.1.0/24", "10.1.2.0/24"],
        private_subnet_cidrs=["10.1.11.0/24", "10.1.12.0/24"], zones=["us-east-1a", "us-east-1b"]))
    a.up()
    b.up()
    a.down()
    assert tagged_leftovers("lab-a") == []
    # Associations, the gateway attachment, the profile's role and the S3 objects carry no tags.
    assert len(tagged_leftovers("lab-b")) >= ALL_STEPS - 9
    assert set(outcomes(b.up()).values()) == {"kept"}


def test_nat_per_az_adds_a_gateway_and_table_per_zone(make_stack):
    stack = make_stack(config=StackConfig(zones=["us-east-1a", "us-east-1b"], nat_per_az=True))
    results = outcomes(stack.up())
    for name in ("nat-eip-2", "nat-gateway-2", "private-route-table-2"):
        assert results[name] == "created"
    counts = count_tagged("stylesphere")
    assert counts["nat-gateway-2"] == 1
    assert all(r.ok for r in stack.down())
    assert tagged_leftovers("stylesphere") == []


def test_switching_back_to_a_single_nat_removes_the_second(make_stack):
    """Nothing may keep billing: the NAT gateway, address and table of the second zone go, and
    the second private subnet moves to the first table before its table is deleted."""
    per_az = StackConfig(zones=["us-east-1a", "us-east-1b"], nat_per_az=True)
    stack = make_stack(config=per_az)
    stack.up()
    single = StackConfig(zones=["us-east-1a", "us-east-1b"], nat_per_az=False)

    plan = {r.name: r.outcome for r in stack.engine(config=single).plan()}
    assert plan["nat-gateway-2"] == plan["nat-eip-2"] == plan["private-route-table-2"] == "delete"
    assert plan["private-subnet-2-association"] == "update"

    results = outcomes(stack.up(config=single))
    assert results["nat-gateway-2"] == results["nat-eip-2"] == results["private-route-table-2"] == "deleted"
    assert results["private-subnet-2-association"] == "updated"
    counts = count_tagged("stylesphere")
    assert "nat-gateway-2" not in counts and "nat-eip-2" not in counts
    assert "nat-gateway-2" not in stack.state_file.read().resources
    assert set(outcomes(stack.up(config=single)).values()) == {"kept"}


def test_plan_makes_no_changes_and_reports_drift(make_stack):
    stack = make_stack()
    plan = stack.plan()
    assert set(outcomes(plan).values()) == {"create"}
    assert stack.mutating_calls() == []
    stack.up()

    # Drift: someone opens SSH on the web group and turns off DNS hostnames.
    import boto3

    ec2 = boto3.client("ec2", region_name="us-east-1")
    web = stack.state_file.read().resources["web-security-group"]["id"]
    vpc = stack.state_file.read().resources["vpc"]["id"]
    ec2.authorize_security_group_ingress(GroupId=web, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": False})

    plan = {r.name: r for r in stack.plan()}
    assert stack.mutating_calls() == []
    assert plan["web-security-group"].outcome == "update"
    assert any("22" in c for c in plan["web-security-group"].changes)
    assert plan["vpc"].outcome == "update"

    fixed = outcomes(stack.up())
    assert fixed["web-security-group"] == "updated" and fixed["vpc"] == "updated"
    assert set(outcomes(stack.plan()).values()) == {"no change"}


def _mutating_call_count_of_full_up(make_stack) -> int:
    probe = make_stack("probe")
    probe.up()
    count = len(probe.mutating_calls())
    probe.down()
    return count


class Crash:
    """Every AWS call after the Nth mutating one fails as if the process had died there."""

    def __init__(self, after: int):
        self.after, self.seen, self.crashed = after, 0, False

    def __call__(self, model, **_):
        from provisioner.engine.context import is_mutating

        if self.crashed:
            raise Interrupted()
        if is_mutating(model.name):
            self.seen += 1
            if self.seen > self.after:
                self.crashed = True
                raise Interrupted()


def test_crash_after_any_call_then_resume_and_down(make_stack, strict):
    # Every delay still happens (each wait is met), only shorter: this runs a whole stack's
    # up, resume and down once per mutating call.
    for delay in dataclasses.fields(strict.delays):
        setattr(strict.delays, delay.name, 0.02)
    total = _mutating_call_count_of_full_up(make_stack)
    assert total >= ALL_STEPS
    for after in range(total):
        name = f"crash-{after}"
        crash = Crash(after)
        crashed = make_stack(name, hooks=[("before-call", crash)])
        crashed.up()
        assert crash.crashed

        resumed = make_stack(name)
        results = resumed.up()
        assert all(r.ok for r in results), (after, [(r.name, r.outcome, r.detail) for r in results])
        counts = count_tagged(name)
        assert all(n == 1 for n in counts.values()), (after, counts)

        down = resumed.down()
        assert all(r.ok for r in down), (after, [(r.name, r.outcome, r.detail) for r in down if not r.ok])
        assert tagged_leftovers(name) == [], after


@pytest.mark.parametrize("lose_state", [False, True])
def test_interrupted_up_is_finished_by_down(make_stack, lose_state):
    crash = Crash(after=9)
    stack = make_stack(hooks=[("before-call", crash)])
    stack.up()
    if lose_state:
        stack.state_file.remove()
    clean = make_stack()
    assert all(r.ok for r in clean.down())
    assert tagged_leftovers("stylesphere") == []


def test_removed_tags_are_put_back_on_every_kind_of_resource(make_stack):
    """The tags are how `down` finds things without state: someone removing one (here the Name
    tag, which every tagged step sets) is drift that `plan` shows and `up` repairs."""
    import boto3

    stack = make_stack()
    stack.up()
    ids = {name: record["id"] for name, record in stack.state_file.read().resources.items()}
    boto3.client("ec2", region_name="us-east-1").delete_tags(Resources=[ids["vpc"]], Tags=[{"Key": "Name"}])
    boto3.client("elbv2", region_name="us-east-1").remove_tags(ResourceArns=[ids["load-balancer"]], TagKeys=["Name"])
    boto3.client("iam").untag_role(RoleName=ids["instance-role"], TagKeys=["Name"])
    boto3.client("iam").untag_instance_profile(InstanceProfileName=ids["instance-profile"], TagKeys=["Name"])
    boto3.client("acm", region_name="us-east-1").remove_tags_from_certificate(
        CertificateArn=ids["certificate"], Tags=[{"Key": "Name"}])
    drifted = {"vpc", "load-balancer", "instance-role", "instance-profile", "certificate"}

    plan = {r.name: r for r in stack.plan()}
    assert {name for name, r in plan.items() if r.outcome == "update"} == drifted
    assert all(plan[name].changes == ["set tag(s) Name"] for name in drifted)
    assert stack.mutating_calls() == []
    fixed = outcomes(stack.up())
    assert {name for name, outcome in fixed.items() if outcome == "updated"} == drifted
    assert set(outcomes(stack.plan()).values()) == {"no change"}
