"""The fleet's quota preflight: quotas read (applied value, else AWS's default), usage counted
from what is in the region (moto), and what the report says when the new stacks do not fit.
Answers moto cannot give (low quotas, no such quota, access denied) come from event hooks."""

from __future__ import annotations

import json
from collections import Counter

import boto3
import pytest

from provisioner.shape.config import StackConfig
from provisioner.engine.context import RunContext, is_mutating
from provisioner.sandbox.emulator import EMULATOR_SERVICE_QUOTAS
from provisioner.engine.errors import AwsFailure, ConfigError
from provisioner.account.quotas import (BASTION_INSTANCE_TYPE, QUOTAS, QuotaLine, Reads, QuotaReport, check_quotas,
                                increase_command, is_standard)

from stacks import ACCOUNT, REGION, ZONES, make_session
from strict_base import refuse

VCPU_CODE = "L-1216C47A"
VPC_CODE = "L-F678F1CE"
EIP_CODE = "L-0263D0A3"
NAT_CODE = "L-FE5A380F"
ALB_CODE = "L-53DA6B97"


class Http:
    status_code = 200
    headers: dict = {}
    content = b""


def quota_answer(service_code: str, quota_code: str, value: float):
    """What a before-call handler returns to make GetServiceQuota answer `value`."""
    return Http(), {"Quota": {"ServiceCode": service_code, "QuotaCode": quota_code, "Value": value},
                    "ResponseMetadata": {"HTTPStatusCode": 200}}


def asked(params) -> tuple[str, str]:
    body = json.loads(params["body"])
    return body["ServiceCode"], body["QuotaCode"]


def context(hooks=()) -> RunContext:
    ctx = RunContext(stack="fleet", region=REGION, config=StackConfig(),
                     session_factory=lambda: make_session(None, hooks))
    ctx.account = ACCOUNT
    # The preflight runs before anything changes: any mutating call fails the test.
    ctx.read_only = True
    return ctx


def config(**kwargs) -> StackConfig:
    return StackConfig(zones=list(ZONES), **kwargs)


def line(report: QuotaReport, key: str, scope: str = "region") -> QuotaLine:
    (found,) = [x for x in report.lines if x.key == key and x.scope == scope]
    return found


# -- building things in moto to count ------------------------------------------------------------

def ec2():
    return boto3.client("ec2", region_name=REGION)


def image() -> str:
    return ec2().describe_images(Owners=["amazon"])["Images"][0]["ImageId"]


def network(cidr="10.50.0.0/16") -> dict:
    client = ec2()
    vpc = client.create_vpc(CidrBlock=cidr)["Vpc"]["VpcId"]
    base = cidr.split(".")
    subnets = {zone: client.create_subnet(VpcId=vpc, CidrBlock=f"{base[0]}.{base[1]}.{n}.0/24",
                                          AvailabilityZone=zone)["Subnet"]["SubnetId"]
               for n, zone in enumerate(ZONES, start=1)}
    return {"vpc": vpc, "subnets": subnets}


def nat_gateway(subnet: str) -> str:
    client = ec2()
    address = client.allocate_address(Domain="vpc")["AllocationId"]
    return client.create_nat_gateway(SubnetId=subnet, AllocationId=address)["NatGateway"]["NatGatewayId"]


def run(instance_type: str, count: int = 1) -> list[str]:
    reservation = ec2().run_instances(ImageId=image(), MinCount=count, MaxCount=count, InstanceType=instance_type)
    return [i["InstanceId"] for i in reservation["Instances"]]


def load_balancer(net: dict, kind: str = "application") -> str:
    elbv2 = boto3.client("elbv2", region_name=REGION)
    params = {"Name": f"lb-{kind}-{net['vpc'][-6:]}", "Subnets": list(net["subnets"].values()), "Type": kind}
    return elbv2.create_load_balancer(**params)["LoadBalancers"][0]["LoadBalancerArn"]


# -- the declarations ----------------------------------------------------------------------------

def test_every_quota_is_declared_once_with_aws_codes():
    assert len({q.key for q in QUOTAS}) == len(QUOTAS)
    assert len({(q.service_code, q.quota_code) for q in QUOTAS}) == len(QUOTAS)
    for quota in QUOTAS:
        assert quota.quota_code.startswith("L-") and len(quota.quota_code) == 10, quota
    assert {(q.service_code, q.quota_code) for q in QUOTAS} >= {
        ("vpc", VPC_CODE), ("ec2", EIP_CODE), ("vpc", NAT_CODE), ("elasticloadbalancing", ALB_CODE),
        ("ec2", VCPU_CODE)}


@pytest.mark.parametrize("instance_type, standard", [
    ("t3.micro", True), ("m7i.large", True), ("c7gn.xlarge", True), ("r7iz.large", True), ("z1d.large", True),
    ("i4i.large", True), ("im4gn.large", True), ("d3en.xlarge", True), ("h1.2xlarge", True), ("a1.large", True),
    ("p3.2xlarge", False), ("g4dn.xlarge", False), ("inf1.xlarge", False), ("trn1.2xlarge", False),
    ("dl1.24xlarge", False), ("hpc6a.48xlarge", False), ("x2gd.large", False), ("u-6tb1.metal", False),
    ("f2.6xlarge", False), ("vt1.3xlarge", False), ("mac1.metal", False), ("", False),
])
def test_standard_families_are_the_ones_aws_counts_under_l_1216c47a(instance_type, standard):
    assert is_standard(instance_type) is standard


# -- on moto, with the emulator's quotas ---------------------------------------------------------

def test_emulator_quotas_are_known_and_a_fresh_region_fits_a_few_stacks(moto_aws):
    report = check_quotas(context(), config(), 3)

    assert report.warnings == []
    assert all(x.limit is not None for x in report.lines)
    assert line(report, "standard_vcpus").limit == EMULATOR_SERVICE_QUOTAS[("ec2", VCPU_CODE)][1] == 32
    assert line(report, "elastic_ips").limit == 5
    assert line(report, "load_balancers").limit == 50
    assert line(report, "vpcs").limit == 5
    # moto's default VPC counts, as AWS's does.
    assert line(report, "vpcs").used == 1 and line(report, "vpcs").fits == 4
    assert report.ok and report.fits == 4
    assert "fit" in report.message() and "room for 4" in report.message()


def test_every_call_is_a_read(moto_aws):
    ctx = context()
    net = network()
    nat_gateway(net["subnets"][ZONES[0]])
    run("t3.micro")
    check_quotas(ctx, config(nat_per_az=True, bastion=True), 2)
    assert ctx.calls and not [c for c in ctx.calls if is_mutating(c[1])]
    assert ("service-quotas", "GetServiceQuota") in ctx.calls


def test_usage_moves_with_what_is_in_the_region(moto_aws):
    before = check_quotas(context(), config(), 1)
    net = network()
    network("10.60.0.0/16")
    ec2().allocate_address(Domain="vpc")
    nat_gateway(net["subnets"][ZONES[0]])                 # one more Elastic IP, and a NAT gateway
    load_balancer(net)
    load_balancer(net, kind="network")                    # not an Application Load Balancer
    run("t3.micro", count=2)                              # 2 x 2 vCPUs
    run("m5.xlarge")                                      # 4 vCPUs
    stopped = run("c5.large")
    ec2().stop_instances(InstanceIds=stopped)             # stopped: takes no vCPUs of the quota
    after = check_quotas(context(), config(), 1)

    assert line(after, "vpcs").used == line(before, "vpcs").used + 2
    assert line(after, "elastic_ips").used == line(before, "elastic_ips").used + 2
    assert line(after, "nat_gateways", ZONES[0]).used == 1
    assert line(after, "load_balancers").used == line(before, "load_balancers").used + 1
    assert line(before, "standard_vcpus").used == 0
    assert line(after, "standard_vcpus").used == 8


def test_vcpus_count_only_standard_families(moto_aws):
    run("g4dn.xlarge")     # G and VT instances: a quota of their own
    run("inf1.xlarge")     # Inf: a quota of its own, though it starts with an "i"
    run("x2gd.large")
    assert line(check_quotas(context(), config(), 1), "standard_vcpus").used == 0
    run("t3.small")
    assert line(check_quotas(context(), config(), 1), "standard_vcpus").used == 2


def test_vcpus_per_stack_from_desired_capacity_and_the_bastion(moto_aws):
    plain = check_quotas(context(), config(instance_type="m5.xlarge", desired_capacity=3, max_size=4), 1)
    assert line(plain, "standard_vcpus").per_stack == 3 * 4
    with_bastion = check_quotas(context(), config(instance_type="m5.xlarge", desired_capacity=3, max_size=4,
                                                  bastion=True), 1)
    assert BASTION_INSTANCE_TYPE == "t3.micro"
    assert line(with_bastion, "standard_vcpus").per_stack == 3 * 4 + 2
    # A GPU fleet takes nothing from the standard quota (its own quota is not checked here).
    gpu = check_quotas(context(), config(instance_type="g4dn.xlarge"), 1)
    assert line(gpu, "standard_vcpus").per_stack == 0 and line(gpu, "standard_vcpus").fits is None


def test_instance_types_are_described_once(moto_aws):
    run("m5.large")
    check_quotas(context(), config(), 1)
    ctx = context()
    check_quotas(ctx, config(), 1)
    assert ("ec2", "DescribeInstanceTypes") not in ctx.calls


def test_an_unknown_instance_type_is_a_config_error(moto_aws):
    with pytest.raises(ConfigError, match="nosuch9.large"):
        check_quotas(context(), config(instance_type="nosuch9.large"), 1)


def test_the_limiting_quota_is_named_with_the_value_to_ask_for(moto_aws):
    run("m5.xlarge", count=6)                             # 24 of the emulator's 32 vCPUs
    report = check_quotas(context(), config(desired_capacity=2), 3)   # t3.micro: 4 vCPUs a stack

    vcpus = line(report, "standard_vcpus")
    assert (vcpus.limit, vcpus.used, vcpus.per_stack, vcpus.fits) == (32, 24, 4, 2)
    assert [x.key for x in report.limiting()] == ["standard_vcpus"]
    assert report.fits == 2 and not report.ok
    message = report.message()
    assert message.startswith("The roster needs 3 new stacks in us-east-1; 2 fit. Raise: ")
    assert "(ec2 L-1216C47A): 32 vCPUs, 24 in use, 4 per stack -> needs 36 for 3 more." in message
    assert f"`{increase_command('ec2', VCPU_CODE, 36, REGION)}`" in message
    assert "--desired-value 36" in message and "VPCs" not in message


# -- stacks that exist half-built ------------------------------------------------------------------

def test_a_half_built_stack_still_takes_what_it_lacks(moto_aws):
    """A stack stopped after its network (a failure, Ctrl-C) is finished by the re-run: its
    Elastic IP, NAT gateway, load balancer and instances still count, and nothing it has."""
    whole = Counter({"vpc": 1, "internet_gateway": 1, "elastic_ip": 1, "nat_gateway": 1, "load_balancer": 1,
                     "auto_scaling_group": 1, "step:bastion": 1})
    half = Counter({"vpc": 1, "internet_gateway": 1, "subnet": 4})
    ctx = context()
    report = check_quotas(ctx, config(desired_capacity=2, bastion=True), 1, [whole, half])
    assert report.finishing == 1
    owed = {x.key: (x.scope, x.owed) for x in report.lines if x.owed}
    assert owed == {"elastic_ips": ("region", 1), "nat_gateways": (ZONES[0], 1), "load_balancers": ("region", 1),
                    "standard_vcpus": ("region", 2 * 2 + 2)}
    assert line(report, "vpcs").owed == 0
    # The emulator's 5 Elastic IPs, none allocated in this test, 1 to come: 4 more stacks fit.
    assert line(report, "elastic_ips").fits == 4
    assert report.ok and "the rest of 1 half-built one" in report.message()


def test_a_stack_that_has_everything_owes_nothing_and_costs_no_call(moto_aws):
    from provisioner.account.quotas import Reads, unfinished

    ctx = context()
    whole = Counter({"vpc": 1, "internet_gateway": 1, "elastic_ip": 2, "nat_gateway": 2, "load_balancer": 1,
                     "auto_scaling_group": 1})
    assert not unfinished(Reads(ctx, config(nat_per_az=True)), whole)
    assert ctx.calls == []
    # One NAT gateway of two: the second zone's is still to come.
    one_nat = whole + Counter()
    one_nat["nat_gateway"] = 1
    report = check_quotas(context(), config(nat_per_az=True), 0, [one_nat])
    assert [(x.scope, x.owed) for x in report.lines if x.key == "nat_gateways"] == [(ZONES[0], 0), (ZONES[1], 1)]


def test_finishing_half_built_stacks_alone_can_be_more_than_the_quota(moto_aws):
    for _ in range(4):
        ec2().allocate_address(Domain="vpc")             # 4 of the emulator's 5 Elastic IPs
    half = Counter({"vpc": 1, "internet_gateway": 1})
    report = check_quotas(context(), config(), 0, [half, half])
    eips = line(report, "elastic_ips")
    assert (eips.used, eips.owed, eips.over) == (4, 2, True)
    assert not report.ok and [x.key for x in report.limiting()] == ["elastic_ips"]
    message = report.message()
    assert "0 new stacks and the rest of 2 half-built ones" in message
    assert "4 in use and 2 still to come for half-built stacks" in message
    assert "--quota-code L-0263D0A3 --desired-value 6" in message


def test_nat_gateways_are_counted_per_zone(moto_aws):
    net = network()
    for _ in range(4):
        nat_gateway(net["subnets"][ZONES[0]])
    gone = nat_gateway(net["subnets"][ZONES[1]])
    ec2().delete_nat_gateway(NatGatewayId=gone)          # deleted: no longer in the zone's quota

    single = check_quotas(context(), config(), 2)
    assert [x.scope for x in single.lines if x.key == "nat_gateways"] == [ZONES[0]]
    first = line(single, "nat_gateways", ZONES[0])
    assert (first.limit, first.used, first.per_stack, first.fits) == (5, 4, 1, 1)
    assert "nat_gateways" in [x.key for x in single.limiting()]
    assert line(single, "elastic_ips").per_stack == 1

    per_az = check_quotas(context(), config(nat_per_az=True), 2)
    assert [x.scope for x in per_az.lines if x.key == "nat_gateways"] == ZONES
    assert line(per_az, "nat_gateways", ZONES[0]).fits == 1
    second = line(per_az, "nat_gateways", ZONES[1])
    assert (second.used, second.fits) == (0, 5)
    assert line(per_az, "elastic_ips").per_stack == 2
    assert "NAT gateways per Availability Zone (vpc L-FE5A380F) in us-east-1a: 5, 4 in use" in per_az.message()


def test_zones_default_to_the_regions_first_available_one(moto_aws):
    report = check_quotas(context(), StackConfig(), 1)
    assert [x.scope for x in report.lines if x.key == "nat_gateways"] == ["us-east-1a"]


# -- answers moto cannot give --------------------------------------------------------------------

def test_low_quotas_from_service_quotas_limit_the_fleet(moto_aws):
    values = {VPC_CODE: 5, VCPU_CODE: 8, ALB_CODE: 1}

    def low(params, **_):
        service_code, quota_code = asked(params)
        if quota_code in values:
            return quota_answer(service_code, quota_code, values[quota_code])
        return None

    network()
    network("10.60.0.0/16")                              # with the default VPC: 3 of 5
    load_balancer(network("10.70.0.0/16"))               # 4 of 5, and the only ALB allowed
    report = check_quotas(context(hooks=[("before-call.service-quotas.GetServiceQuota", low)]), config(), 3)

    assert line(report, "vpcs").fits == 1
    assert line(report, "standard_vcpus").fits == 2      # 8 vCPUs, 4 a stack
    assert line(report, "load_balancers").fits == 0
    assert report.fits == 0 and not report.ok
    assert {x.key for x in report.limiting()} == {"vpcs", "load_balancers", "standard_vcpus"}
    message = report.message()
    assert "--quota-code L-53DA6B97 --desired-value 4" in message      # 1 in use + 3
    assert "--quota-code L-F678F1CE --desired-value 7" in message      # 4 in use + 3
    assert "--quota-code L-1216C47A --desired-value 12" in message


def test_three_vpcs_of_five_leave_room_for_two(moto_aws):
    def five(params, **_):
        service_code, quota_code = asked(params)
        return quota_answer(service_code, quota_code, 5) if quota_code == VPC_CODE else None

    network()
    network("10.60.0.0/16")
    report = check_quotas(context(hooks=[("before-call.service-quotas.GetServiceQuota", five)]), config(), 2)
    vpcs = line(report, "vpcs")
    assert (vpcs.limit, vpcs.used, vpcs.fits) == (5, 3, 2)
    assert report.ok


def test_no_applied_value_falls_back_to_the_aws_default(moto_aws):
    def no_applied_value(params, **_):
        if asked(params) == ("ec2", EIP_CODE):
            return refuse("NoSuchResourceException", "The request failed because the specified quota does not exist.")
        return None

    ctx = context(hooks=[("before-call.service-quotas.GetServiceQuota", no_applied_value)])
    report = check_quotas(ctx, config(), 1)
    assert line(report, "elastic_ips").limit == 5        # the emulator's GetAWSDefaultServiceQuota
    assert report.warnings == []
    assert ("service-quotas", "GetAWSDefaultServiceQuota") in ctx.calls


def test_a_quota_nobody_knows_is_a_warning_not_a_limit(moto_aws):
    def unknown(params, **_):
        if asked(params) == ("ec2", VCPU_CODE):
            return refuse("NoSuchResourceException", "The request failed because the specified quota does not exist.")
        return None

    run("m5.xlarge", count=8)                            # 32 vCPUs: would be full
    hooks = [("before-call.service-quotas.GetServiceQuota", unknown),
             ("before-call.service-quotas.GetAWSDefaultServiceQuota", unknown)]
    report = check_quotas(context(hooks=hooks), config(), 2)
    vcpus = line(report, "standard_vcpus")
    assert vcpus.limit is None and vcpus.fits is None and vcpus.used == 32
    assert report.ok and report.fits == 4
    assert len(report.warnings) == 1
    assert "L-1216C47A" in report.warnings[0] and "not checked" in report.warnings[0]


def test_access_denied_on_service_quotas_is_a_warning_not_a_crash(moto_aws):
    refusals = []

    def denied(**_):
        refusals.append(1)
        return refuse("AccessDeniedException", "User is not authorized to perform: servicequotas:GetServiceQuota",
                      status=400)

    ctx = context(hooks=[("before-call.service-quotas.GetServiceQuota", denied)])
    report = check_quotas(ctx, config(), 30)
    assert all(x.limit is None and x.fits is None for x in report.lines)
    assert report.ok and report.fits == 30
    (warning,) = report.warnings
    assert "servicequotas:GetServiceQuota was refused (AccessDeniedException" in warning
    for quota in QUOTAS:
        # Each quota the stacks take from is named; one of an option they lack is not read at all.
        assert (quota.quota_code in warning) == bool(quota.need(Reads(ctx, config()))), quota.key
    assert "could read" in report.message()
    # Refused once is refused for all: not asked again for every quota.
    assert len(refusals) == 1


def test_other_service_quotas_errors_fail_with_words(moto_aws):
    def broken(**_):
        return refuse("IllegalArgumentException", "the quota code is malformed")

    # The first quota read names itself (the registry's order).
    with pytest.raises(AwsFailure, match=r"cannot read the quota [^(]+ \(\w+ L-[0-9A-F]+\).*IllegalArgumentException"):
        check_quotas(context(hooks=[("before-call.service-quotas.GetServiceQuota", broken)]), config(), 1)


def test_a_usage_read_refused_stops_the_check(moto_aws):
    def denied(**_):
        return refuse("UnauthorizedOperation", "You are not authorized to perform this operation.", status=403)

    with pytest.raises(ConfigError, match="ec2:DescribeAddresses was refused") as raised:
        check_quotas(context(hooks=[("before-call.ec2.DescribeAddresses", denied)]), config(), 1)
    assert raised.value.exit_code == 2


# -- the report on its own -----------------------------------------------------------------------

def make_line(key, limit, used, per_stack, fits, scope="region", code="L-00000000", service="vpc", unit=""):
    return QuotaLine(key=key, name=key.title(), service_code=service, quota_code=code, limit=limit, used=used,
                     per_stack=per_stack, scope=scope, fits=fits, unit=unit)


def test_a_per_zone_quota_full_in_both_zones_asks_once_for_the_fuller_zone():
    report = QuotaReport(region="eu-west-1", wanted=3, lines=[
        make_line("nat", 5, 5, 1, 0, scope="eu-west-1a", code=NAT_CODE),
        make_line("nat", 5, 4, 1, 1, scope="eu-west-1b", code=NAT_CODE),
        make_line("vpcs", 20, 1, 1, 19, code=VPC_CODE),
    ])
    assert report.fits == 0 and [x.scope for x in report.limiting()] == ["eu-west-1a", "eu-west-1b"]
    message = report.message()
    assert message.count("request-service-quota-increase") == 1
    assert "--desired-value 8 --region eu-west-1" in message       # 5 in use + 3 in the fuller zone
    assert "in eu-west-1a: 5, 5 in use" in message and "in eu-west-1b: 5, 4 in use" in message


def test_no_known_limit_means_everything_wanted_fits():
    report = QuotaReport(region=REGION, wanted=7, lines=[make_line("vpcs", None, 3, 1, None)])
    assert report.fits == 7 and report.ok and report.limiting() == []
