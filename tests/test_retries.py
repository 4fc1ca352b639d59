"""Sequences moto cannot produce on its own, injected with botocore event hooks: throttling,
eventual consistency, DependencyViolation that clears (or never does), and errors that must
never be retried."""

from __future__ import annotations

import boto3
import pytest
from botocore.awsrequest import AWSResponse

from stacks import outcomes, tagged_leftovers
from strict import refuse


class _Raw:
    def __init__(self, body: bytes):
        self.body = body

    def stream(self, **_):
        yield self.body


def throttle_response(request, **_):
    body = (b"<Response><Errors><Error><Code>RequestLimitExceeded</Code><Message>Request limit exceeded."
            b"</Message></Error></Errors><RequestID>throttled</RequestID></Response>")
    return AWSResponse(request.url, 503, {}, _Raw(body))


class FailFirst:
    """A before-call hook refusing an operation with `code` for its first `times` calls."""

    def __init__(self, code: str, times: int):
        self.code, self.times, self.calls = code, times, 0

    def __call__(self, **_):
        self.calls += 1
        if self.calls <= self.times:
            return refuse(self.code, f"injected {self.code}")
        return None


class ThrottleFirst:
    """A before-send hook (below botocore's retry layer) answering 503 RequestLimitExceeded."""

    def __init__(self, times: int):
        self.times, self.calls = times, 0

    def __call__(self, request, **kwargs):
        self.calls += 1
        if self.calls <= self.times:
            response = throttle_response(request)
            # botocore hands before-send to every handler and takes the first answer, so moto
            # would still carry out the request; an address moto does not serve keeps it from
            # doing so, as AWS does nothing for a throttled request.
            request.url = "https://throttled.invalid/"
            return response
        return None


def test_throttling_is_absorbed_by_botocore_retries(make_stack):
    throttle_subnets, throttle_reads = ThrottleFirst(2), ThrottleFirst(2)
    stack = make_stack()
    stack.hooks.append(("before-send.ec2.CreateSubnet", throttle_subnets))
    stack.hooks.append(("before-send.ec2.DescribeVpcs", throttle_reads))
    results = stack.up()
    assert set(outcomes(results).values()) == {"created"}
    assert throttle_subnets.calls >= 3 and throttle_reads.calls >= 3
    # No duplicate subnet from the retried creates.
    ec2 = boto3.client("ec2", region_name="us-east-1")
    assert len(ec2.describe_subnets(Filters=[{"Name": "tag:provision:stack", "Values": ["stylesphere"]}])["Subnets"]) == 4


def test_eventual_consistency_right_after_create_is_waited_out(make_stack):
    not_yet = FailFirst("InvalidVpcID.NotFound", 3)
    stack = make_stack()
    stack.hooks.append(("before-call.ec2.CreateSubnet", not_yet))
    results = stack.up()
    assert all(r.ok for r in results), [(r.name, r.detail) for r in results if not r.ok]
    assert not_yet.calls == 4 + 3  # four subnets, three refused attempts


def test_dependency_violation_then_success_during_delete(make_stack):
    busy = FailFirst("DependencyViolation", 3)
    stack = make_stack()
    stack.up()
    stack.hooks.append(("before-call.ec2.DeleteSecurityGroup", busy))
    results = stack.down()
    assert all(r.ok for r in results)
    assert busy.calls == 2 + 3
    assert tagged_leftovers("stylesphere") == []


def test_dependency_deadline_names_what_blocks(make_stack):
    """A stranger's network interface in our subnet never goes away: after the deadline the
    failure names it, the VPC is left alone, and a later down (once it is gone) finishes."""
    stack = make_stack()
    stack.up()
    ec2 = boto3.client("ec2", region_name="us-east-1")
    subnet = stack.state_file.read().resources["private-subnet-2"]["id"]
    eni = ec2.create_network_interface(SubnetId=subnet, Description="someone else's instance")["NetworkInterface"]

    engine = stack.engine(superset=True)
    engine.ctx.timeout_scale = 0.002  # the 1200 s dependency deadline becomes 2.4 s
    results = {r.name: r for r in engine.down()}
    failed = results["private-subnet-2"]
    assert failed.outcome == "failed"
    assert "DependencyViolation" in failed.detail
    assert eni["NetworkInterfaceId"] in failed.detail and "someone else's instance" in failed.detail
    assert results["vpc"].outcome == "skipped"
    assert stack.state_file.exists()  # what is left is still known

    ec2.delete_network_interface(NetworkInterfaceId=eni["NetworkInterfaceId"])
    assert all(r.ok for r in stack.down())
    assert tagged_leftovers("stylesphere") == []


@pytest.mark.parametrize("code", ["UnauthorizedOperation", "AccessDenied", "InvalidParameterValue"])
def test_permission_and_validation_errors_are_never_retried(make_stack, code):
    denied = FailFirst(code, 100)
    stack = make_stack()
    stack.hooks.append(("before-call.ec2.CreateVpc", denied))
    results = {r.name: r for r in stack.up()}
    assert denied.calls == 1
    assert results["vpc"].outcome == "failed"
    assert code in results["vpc"].detail
    if code != "InvalidParameterValue":
        assert "ec2:CreateVpc" in results["vpc"].detail
    assert results["public-subnet-1"].outcome == "skipped"


def test_a_wrong_teardown_order_is_caught_by_the_strict_fixture(make_stack, strict, monkeypatch):
    """If the NAT gateway did not declare its subnet and the gateway attachment as dependencies,
    `down` would delete them while the gateway still exists. Real AWS refuses; so does the strict
    fixture, and the test sees it."""
    from steps.network.nat_gateway import NatGateway

    stack = make_stack()
    stack.up()
    original = NatGateway.__init__

    def careless_init(self, index):
        original(self, index)
        self.depends_on = (f"nat-eip-{index + 1}",)

    monkeypatch.setattr(NatGateway, "__init__", careless_init)
    strict.delays.nat_delete = 0.5
    stack.down()
    wrong = [r for r in strict.refusals if r[2] == "order"]
    assert ("DeleteSubnet", "DependencyViolation", "order") in wrong or \
           ("DetachInternetGateway", "DependencyViolation", "order") in wrong, strict.refusals


def test_strict_fixture_refuses_what_aws_refuses(strict):
    """The fixture itself: each rule on plain boto3 calls."""
    session = boto3.session.Session(region_name="us-east-1")
    strict.install(session.events)
    ec2 = session.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.9.1.0/24")["Subnet"]["SubnetId"]
    igw = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    eip = ec2.allocate_address(Domain="vpc")["AllocationId"]
    with pytest.raises(Exception, match="Gateway.NotAttached"):
        ec2.create_nat_gateway(SubnetId=subnet, AllocationId=eip)
    ec2.attach_internet_gateway(InternetGatewayId=igw, VpcId=vpc)
    nat = ec2.create_nat_gateway(SubnetId=subnet, AllocationId=eip)["NatGateway"]["NatGatewayId"]
    alb = ec2.create_security_group(GroupName="a", Description="a", VpcId=vpc)["GroupId"]
    web = ec2.create_security_group(GroupName="w", Description="w", VpcId=vpc)["GroupId"]
    ec2.authorize_security_group_ingress(GroupId=web, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "UserIdGroupPairs": [{"GroupId": alb}]}])

    for call, kwargs, code in [
        (ec2.delete_subnet, {"SubnetId": subnet}, "DependencyViolation"),
        (ec2.detach_internet_gateway, {"InternetGatewayId": igw, "VpcId": vpc}, "DependencyViolation"),
        (ec2.delete_internet_gateway, {"InternetGatewayId": igw}, "DependencyViolation"),
        (ec2.release_address, {"AllocationId": eip}, "InvalidIPAddress.InUse"),
        (ec2.delete_security_group, {"GroupId": alb}, "DependencyViolation"),
        (ec2.delete_vpc, {"VpcId": vpc}, "DependencyViolation"),
    ]:
        with pytest.raises(Exception, match=code):
            call(**kwargs)
    assert ec2.describe_nat_gateways(NatGatewayIds=[nat])["NatGateways"][0]["State"] == "pending"
    ec2.delete_nat_gateway(NatGatewayId=nat)
    assert ec2.describe_nat_gateways(NatGatewayIds=[nat])["NatGateways"][0]["State"] == "deleting"
    with pytest.raises(Exception, match="DependencyViolation"):
        ec2.delete_subnet(SubnetId=subnet)  # its interface lingers after the gateway is gone


def test_strict_fixture_records_a_deletion_only_once_aws_accepted_it(strict):
    """A call can stop after the strict rules looked and before it reaches AWS: the tool's own
    before-call check raises on Ctrl-C. Nothing was deleted then, so the fixture must not believe
    otherwise (it once did, and a re-run after Ctrl-C saw a live NAT gateway as `deleted`, skipped
    it, and retried the detach of the internet gateway until the test's timeout)."""
    session = boto3.session.Session(region_name="us-east-1")
    strict.install(session.events)
    strict.delays.nat_create = strict.delays.nat_delete = strict.delays.eni_release = 0
    stopped = {"DeleteNatGateway": True, "DeleteLoadBalancer": True}

    class Stopped(Exception):
        pass

    def stop(model, **_):  # registered after the rules, as RunContext's own check is
        if stopped.pop(model.name, False):
            raise Stopped(model.name)

    session.events.register("before-call", stop)
    ec2, elbv2 = session.client("ec2"), session.client("elbv2")
    vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.9.{i}.0/24", AvailabilityZone=f"us-east-1{z}")
               ["Subnet"]["SubnetId"] for i, z in ((1, "a"), (2, "b"))]
    igw = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    ec2.attach_internet_gateway(InternetGatewayId=igw, VpcId=vpc)
    eip = ec2.allocate_address(Domain="vpc")["AllocationId"]
    nat = ec2.create_nat_gateway(SubnetId=subnets[0], AllocationId=eip)["NatGateway"]["NatGatewayId"]
    alb = elbv2.create_load_balancer(Name="stopped", Subnets=subnets)["LoadBalancers"][0]["LoadBalancerArn"]

    with pytest.raises(Stopped):
        ec2.delete_nat_gateway(NatGatewayId=nat)
    with pytest.raises(Stopped):
        elbv2.delete_load_balancer(LoadBalancerArn=alb)
    assert ec2.describe_nat_gateways(NatGatewayIds=[nat])["NatGateways"][0]["State"] == "available"
    assert strict.nat_deleted == {} and strict.alb_deleted == {}
    with pytest.raises(Exception, match="DependencyViolation"):  # its address is still mapped
        ec2.detach_internet_gateway(InternetGatewayId=igw, VpcId=vpc)

    ec2.delete_nat_gateway(NatGatewayId=nat)  # this time it reaches AWS
    elbv2.delete_load_balancer(LoadBalancerArn=alb)
    assert set(strict.nat_deleted) == {nat} and set(strict.alb_deleted) == {alb}
    ec2.detach_internet_gateway(InternetGatewayId=igw, VpcId=vpc)


def test_a_failed_lookup_during_down_is_not_taken_for_absent(make_stack):
    """If finding the internet gateway fails, its attachment cannot be looked for: down must fail
    and keep both in the state file, not report them gone."""
    stack = make_stack()
    stack.up()
    stack.hooks.append(("before-call.ec2.DescribeInternetGateways", FailFirst("UnauthorizedOperation", 100)))
    results = {r.name: r for r in stack.down()}
    assert results["internet-gateway"].outcome != "deleted"
    assert results["internet-gateway-attachment"].outcome == "failed"
    assert "could not look for it" in results["internet-gateway-attachment"].detail
    # What is found by its own tags does not wait for that lookup: it goes as far as the order
    # allows (the route tables, associations and security groups), the rest stays known.
    assert results["web-security-group"].outcome == "deleted"
    assert results["public-subnet-1-association"].outcome == "deleted"
    assert not [r for r in results.values() if r.outcome == "absent" and r.name in stack.state_file.read().resources]
    saved = stack.state_file.read().resources
    assert "internet-gateway" in saved and "internet-gateway-attachment" in saved
    stack.hooks.clear()
    assert all(r.ok for r in stack.down())
    assert tagged_leftovers("stylesphere") == []


class NotVisibleYet:
    """Describe calls naming a new id answer NotFound a few times, as AWS may right after a
    create (describe calls with filters only never do)."""

    def __init__(self, id_param: str, code: str, times: int):
        self.id_param, self.code, self.times, self.refused = id_param, code, times, 0

    def __call__(self, params, **_):
        if self.id_param in (params.get("body") or {}) and self.refused < self.times:
            self.refused += 1
            return refuse(self.code, f"injected {self.code}")
        return None


def test_waiters_ride_out_not_found_right_after_create(make_stack):
    vpcs = NotVisibleYet("VpcId.1", "InvalidVpcID.NotFound", 2)
    subnets = NotVisibleYet("SubnetId.1", "InvalidSubnetID.NotFound", 3)
    stack = make_stack(hooks=[("before-call.ec2.DescribeVpcs", vpcs),
                              ("before-call.ec2.DescribeSubnets", subnets)])
    results = stack.up()
    assert all(r.ok for r in results), [(r.name, r.detail) for r in results if not r.ok]
    assert vpcs.refused == 2 and subnets.refused == 3
