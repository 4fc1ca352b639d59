"""The inventory: what `list`, `cleanup` and the cost line read from AWS's tags, and the untagged
things people forget. Whole stacks on moto, plus hand-made look-alikes that must never count."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timezone

import boto3
import pytest

from provisioner.shape.config import StackConfig
from provisioner.engine.context import TAG_STACK, RunContext
from provisioner.engine.errors import AwsFailure
from provisioner.account.inventory import BY_KIND, KINDS, SCANNERS, Found, forgotten, regions, scan
from provisioner.engine.registry import REGISTRY, listings

from stacks import ACCOUNT, REGION, count_tagged, live_resources, make_session
from strict_base import refuse

OTHER_REGION = "eu-west-1"
# The kinds of --waf and --cdn, not in a default stack (test_the_edge_kinds_are_scanned...).
# What live_resources (tests/stacks.py) calls each kind.
LIVE_KINDS = {"Vpcs": "vpc", "Subnets": "subnet", "InternetGateways": "internet_gateway",
              "Addresses": "elastic_ip", "NatGateways": "nat_gateway", "RouteTables": "route_table",
              "SecurityGroups": "security_group", "Instances": "instance", "Volumes": "volume",
              "LaunchTemplates": "launch_template", "LoadBalancers": "load_balancer",
              "TargetGroups": "target_group", "AutoScalingGroups": "auto_scaling_group",
              "Certificates": "certificate", "Buckets": "bucket", "Roles": "iam_role",
              "InstanceProfiles": "instance_profile", "Repositories": "ecr_repository",
              "Projects": "codebuild_project", "AppLogGroups": "app_log_group",
              "CodeBuildLogGroups": "codebuild_log_group", "WafLogGroups": "waf_log_group"}




def context(region=REGION, strict=None, hooks=()) -> RunContext:
    ctx = RunContext(stack="whoever", region=region, config=StackConfig(),
                     session_factory=lambda: make_session(strict, hooks))
    ctx.account = ACCOUNT
    return ctx


def look_alike(region=REGION) -> dict:
    """Untagged things that look like a stack's (a VPC named like one, a NAT gateway, an address,
    a volume), made outside the tool: never the inventory's, and the forgotten ones to report."""
    ec2 = boto3.client("ec2", region_name=region)
    vpc = ec2.create_vpc(CidrBlock="10.99.0.0/16", TagSpecifications=[
        {"ResourceType": "vpc", "Tags": [{"Key": "Name", "Value": "lab-c-vpc"}]}])["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.99.1.0/24", AvailabilityZone=f"{region}a")["Subnet"]["SubnetId"]
    gateway = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    ec2.attach_internet_gateway(InternetGatewayId=gateway, VpcId=vpc)
    nat_address = ec2.allocate_address(Domain="vpc")["AllocationId"]
    nat = ec2.create_nat_gateway(SubnetId=subnet, AllocationId=nat_address)["NatGateway"]["NatGatewayId"]
    spare_address = ec2.allocate_address(Domain="vpc")["AllocationId"]
    volume = ec2.create_volume(AvailabilityZone=f"{region}a", Size=8, VolumeType="gp3")["VolumeId"]
    return {"vpc": vpc, "subnet": subnet, "internet_gateway": gateway, "nat_address": nat_address,
            "nat_gateway": nat, "elastic_ip": spare_address, "volume": volume}


def default_kinds() -> set[str]:
    """The kinds a stack of the default shape is listed as: its steps' and what they make."""
    from provisioner.engine.registry import build_steps
    from provisioner.shape.config import StackConfig

    kinds = set()
    for step in build_steps(StackConfig()).values():
        kinds |= {listing.kind for listing in (type(step).listing, *type(step).also_makes) if listing}
    assert kinds <= set(KINDS)
    return kinds


def by_stack(found) -> dict[str, Counter]:
    out: dict[str, Counter] = {}
    for f in found:
        out.setdefault(f.stack, Counter())[f.kind] += 1
    return out


def test_scan_finds_every_kind_of_both_stacks_and_nothing_untagged(make_stack):
    for name in ("lab-a", "lab-b"):
        make_stack(name).up()
    other = look_alike()
    ctx = context()
    found = scan(ctx)

    kinds = by_stack(found)
    assert set(kinds) == {"lab-a", "lab-b"}
    for stack in ("lab-a", "lab-b"):
        # Key pairs come with --bastion only (tests/test_steps_bastion.py scans such a stack), the
        # data tier's kinds with its options (tests/test_steps_data*.py).
        assert set(kinds[stack]) == default_kinds(), stack
        assert kinds[stack]["instance"] == 2 and kinds[stack]["volume"] == 2 and kinds[stack]["listener"] == 2
        # Every tagged step of the stack, counted as tests/stacks.py counts them.
        steps = Counter(f.step for f in found if f.stack == stack and f.kind not in ("instance", "volume", "listener"))
        assert dict(steps) == count_tagged(stack)
    # Exactly what carries the tag, whatever kind (listeners are not in live_resources).
    tagged = {(LIVE_KINDS[kind], rid, tags[TAG_STACK]) for kind, rid, tags in live_resources() if tags.get(TAG_STACK)}
    assert {(f.kind, f.id, f.stack) for f in found if f.kind != "listener"} == tagged
    assert not set(other.values()) & {f.id for f in found}
    assert all(f.region == REGION for f in found)
    assert all(f.created is not None and f.created.tzinfo is not None for f in found)
    assert all(f.tags[TAG_STACK] == f.stack for f in found)
    assert [KINDS.index(f.kind) for f in found] == sorted(KINDS.index(f.kind) for f in found)

    for stack in ("lab-a", "lab-b"):
        mine = {kind: [f for f in found if f.stack == stack and f.kind == kind] for kind in KINDS}
        assert [f.detail for f in mine["instance"]] == [{"instance_type": "t3.micro", "state": "running"}] * 2
        assert [f.detail for f in mine["volume"]] == [{"size_gb": 20, "volume_type": "gp3", "state": "in-use"}] * 2
        (alb,) = mine["load_balancer"]
        assert alb.id.startswith("arn:aws:elasticloadbalancing:")
        assert alb.detail == {"type": "application", "scheme": "internet-facing", "zones": 2,
                              "vpc_id": mine["vpc"][0].id, "dns_name": f"{stack}-alb-1.{REGION}.elb.amazonaws.com"}
        (nat,) = mine["nat_gateway"]
        assert nat.detail == {"state": "available", "vpc_id": mine["vpc"][0].id}
        assert [f.detail for f in mine["elastic_ip"]] == [{"associated": True}]
        # The instances' role and CodeBuild's.
        assert sorted(f.id for f in mine["iam_role"]) == [f"{stack}-{REGION}-build", f"{stack}-{REGION}-web"]
        assert [f.id for f in mine["instance_profile"]] == [f"{stack}-{REGION}-web"]
        assert [f.id for f in mine["bucket"]] == [f"{stack}-assets-{ACCOUNT}-{REGION}"]
        assert [f.id for f in mine["auto_scaling_group"]] == [f"{stack}-web"]
        assert all(f.detail == {} for f in mine["vpc"] + mine["subnet"] + mine["listener"])

    # The cost: one call per list, never the same list twice; per-item calls only for what
    # may be the tool's (two stacks: 2 certificates, 2 buckets, 2 roles, 2 profiles, 2 load
    # balancers' listeners, 2 ECR repositories; 4 roles, the instances' and CodeBuild's; ELBv2
    # tags in one call for load balancers and target groups, one for listeners; CodeBuild's
    # projects and their tags in one call).
    ops = Counter(op for _, op in ctx.calls)
    per_item = {"ListTagsForCertificate", "GetBucketTagging", "ListInstanceProfileTags", "DescribeListeners",
                "ListTagsForResource", "ListTagsLogGroup"}
    # CloudWatch Logs: one list per name prefix of the tool's log groups (WAF's, CodeBuild's, and
    # `/provision/`, which the app's and the flow logs' groups share: listed once for both).
    log_prefixes = {listing.params["logGroupNamePrefix"] for listing in listings() if listing.service == "logs"}
    assert len([listing for listing in listings() if listing.service == "logs"]) == 4
    assert ops["DescribeLogGroups"] == len(log_prefixes) == 3, ops
    assert all(n == 1 for op, n in ops.items()
               if op not in per_item | {"DescribeTags", "ListRoleTags", "DescribeLogGroups"}), ops
    assert all(ops[op] == 2 for op in per_item) and ops["DescribeTags"] == 2 and ops["ListRoleTags"] == 4, ops
    # One call per list (a kind of an option the stacks lack still costs its list call; the log
    # groups' list once per prefix), and the 19 per-item reads above for two stacks.
    lists = {(s.service, s.operation) for s in SCANNERS if not s.parent}
    # KMS: ListKeys names no owner or state, so each key is described (and a customer key's tags
    # read); moto makes one key of its own for the encrypted volumes (AWS's is aws/ebs,
    # AWS-managed: described only).
    assert ops["DescribeKey"] == 1 and ops["ListResourceTags"] <= 1
    assert len(ctx.calls) == len(lists) + len(log_prefixes) - 1 + 19 + ops["DescribeKey"] + ops["ListResourceTags"]


def test_after_down_only_the_other_stack_remains(make_stack):
    make_stack("lab-a").up()
    lab_b = make_stack("lab-b")
    lab_b.up()
    before = by_stack(scan(context()))
    lab_b.down()
    after = scan(context())
    assert by_stack(after) == {"lab-a": before["lab-a"]}
    # Nothing of lab-b is left to forget either: its addresses were released, not orphaned.
    assert forgotten(context()) == []


def test_forgotten_reports_the_untagged_look_alike_only(make_stack):
    make_stack("lab-a").up()
    other = look_alike()
    ctx = context()
    lost = sorted(forgotten(ctx), key=lambda f: f.kind)
    assert [(f.kind, f.id, f.why) for f in lost] == [
        ("elastic_ip", other["elastic_ip"], "not associated with anything"),
        ("nat_gateway", other["nat_gateway"], f"NAT gateway in {other['vpc']}, which runs no instances"),
        ("volume", other["volume"], "not attached to any instance"),
    ]
    assert all(f.region == REGION for f in lost)
    assert lost[0].detail == {"associated": False}
    assert lost[1].detail == {"state": "available", "vpc_id": other["vpc"]}
    assert lost[2].detail == {"size_gb": 8, "volume_type": "gp3", "state": "available"}
    assert "DescribeInstances" in [op for _, op in ctx.calls]


def test_forgotten_load_balancer_until_its_vpc_runs_an_instance(moto_aws):
    other = look_alike()
    ec2 = boto3.client("ec2", region_name=REGION)
    second = ec2.create_subnet(VpcId=other["vpc"], CidrBlock="10.99.2.0/24",
                               AvailabilityZone=f"{REGION}b")["Subnet"]["SubnetId"]
    elb = boto3.client("elbv2", region_name=REGION)
    alb = elb.create_load_balancer(Name="lab-c-alb", Subnets=[other["subnet"], second], Type="application",
                                   Scheme="internet-facing")["LoadBalancers"][0]["LoadBalancerArn"]
    lost = {f.kind: f for f in forgotten(context())}
    assert set(lost) == {"elastic_ip", "volume", "nat_gateway", "load_balancer"}
    assert lost["load_balancer"].id == alb
    assert lost["load_balancer"].why == f"load balancer in {other['vpc']}, which runs no instances"
    assert lost["load_balancer"].detail == {"type": "application", "scheme": "internet-facing", "zones": 2,
                                            "vpc_id": other["vpc"], "dns_name": f"lab-c-alb-1.{REGION}.elb.amazonaws.com"}
    # Once the VPC runs an instance, its NAT gateway and load balancer are in use.
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, InstanceType="t3.micro", SubnetId=other["subnet"])
    assert {f.kind for f in forgotten(context())} == {"elastic_ip", "volume"}


def test_iam_and_bucket_belong_to_the_region_in_their_name(make_stack):
    make_stack("lab-a").up()
    elsewhere = make_stack("lab-e", region=OTHER_REGION,
                           config=StackConfig(zones=[f"{OTHER_REGION}a", f"{OTHER_REGION}b"]))
    elsewhere.up(only=["instance-profile", "instance-role", "assets-bucket"])

    there = scan(context(OTHER_REGION))
    assert {(f.stack, f.kind, f.id, f.region) for f in there} == {
        ("lab-e", "iam_role", f"lab-e-{OTHER_REGION}-web", OTHER_REGION),
        ("lab-e", "instance_profile", f"lab-e-{OTHER_REGION}-web", OTHER_REGION),
        ("lab-e", "bucket", f"lab-e-assets-{ACCOUNT}-{OTHER_REGION}", OTHER_REGION),
    }
    here = scan(context())
    assert {f.stack for f in here} == {"lab-a"}
    assert {f.id for f in here if f.kind in ("iam_role", "instance_profile", "bucket")} == {
        f"lab-a-{REGION}-web", f"lab-a-{REGION}-build", f"lab-a-assets-{ACCOUNT}-{REGION}"}


def test_a_renamed_or_untagged_iam_role_is_not_the_tools(moto_aws):
    iam = boto3.client("iam", region_name=REGION)
    trust = '{"Version": "2012-10-17", "Statement": []}'
    tags = [{"Key": TAG_STACK, "Value": "lab-x"}]
    iam.create_role(RoleName=f"lab-x-{REGION}-web", Path="/provision/", AssumeRolePolicyDocument=trust, Tags=tags)
    # Tagged for lab-x but named for another stack, untagged, or outside the tool's path.
    iam.create_role(RoleName=f"lab-y-{REGION}-web", Path="/provision/", AssumeRolePolicyDocument=trust, Tags=tags)
    iam.create_role(RoleName=f"lab-z-{REGION}-web", Path="/provision/", AssumeRolePolicyDocument=trust)
    iam.create_role(RoleName=f"lab-w-{REGION}-web", Path="/", AssumeRolePolicyDocument=trust,
                    Tags=[{"Key": TAG_STACK, "Value": "lab-w"}])
    ctx = context()
    assert [(f.kind, f.id) for f in scan(ctx)] == [("iam_role", f"lab-x-{REGION}-web")]
    assert Counter(op for _, op in ctx.calls)["ListRoleTags"] == 3


def test_gone_and_going_states(moto_aws):
    """A shutting-down instance still bills: kept, with its state. Terminated instances, deleted or
    deleting NAT gateways and volumes are not there any more."""
    ec2 = boto3.client("ec2", region_name=REGION)
    tag = [{"Key": TAG_STACK, "Value": "lab-s"}, {"Key": "provision:created-at", "Value": "2026-01-02T03:04:05Z"}]
    vpc = ec2.create_vpc(CidrBlock="10.7.0.0/16", TagSpecifications=[{"ResourceType": "vpc", "Tags": tag}])["Vpc"]
    subnet = ec2.create_subnet(VpcId=vpc["VpcId"], CidrBlock="10.7.1.0/24")["Subnet"]["SubnetId"]
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    instances = [i["InstanceId"] for i in ec2.run_instances(
        ImageId=image, MinCount=3, MaxCount=3, InstanceType="t3.micro", SubnetId=subnet,
        TagSpecifications=[{"ResourceType": "instance", "Tags": tag}])["Instances"]]
    volumes = [ec2.create_volume(AvailabilityZone=f"{REGION}a", Size=4, TagSpecifications=[
        {"ResourceType": "volume", "Tags": tag}])["VolumeId"] for _ in range(2)]
    states = {instances[0]: "shutting-down", instances[1]: "terminated", volumes[0]: "deleting"}

    def rewrite(parsed, **_):
        for reservation in parsed.get("Reservations", []):
            for i in reservation["Instances"]:
                if i["InstanceId"] in states:
                    i["State"]["Name"] = states[i["InstanceId"]]
        for v in parsed.get("Volumes", []):
            v["State"] = states.get(v["VolumeId"], v["State"])

    ctx = context(hooks=[("after-call.ec2.DescribeInstances", rewrite), ("after-call.ec2.DescribeVolumes", rewrite)])
    found = {(f.kind, f.id): f for f in scan(ctx)}
    assert found[("instance", instances[0])].detail["state"] == "shutting-down"
    assert ("instance", instances[1]) not in found and ("instance", instances[2]) in found
    assert ("volume", volumes[0]) not in found and ("volume", volumes[1]) in found
    # The created-at tag, else (instances, volumes: the launch template's tags) the API's time.
    assert found[("vpc", vpc["VpcId"])].created == datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    assert found[("instance", instances[2])].created != found[("vpc", vpc["VpcId"])].created
    for state in ("deleting", "deleted", "failed"):
        assert BY_KIND["nat_gateway"].gone({"State": state})
    assert not BY_KIND["nat_gateway"].gone({"State": "pending"})
    assert not BY_KIND["auto_scaling_group"].gone({"Status": "Delete in progress"})


def test_found_reads_expiry_and_owner_from_its_tags():
    def found(**tags):
        return Found("s", REGION, "vpc", "vpc-1", tags, None, {})

    assert found(**{"provision:expires-at": "2026-11-23T18:00:00Z"}).expires_at == datetime(
        2026, 11, 23, 18, 0, tzinfo=timezone.utc)
    for value in ("never", "soon", None):
        assert found(**({"provision:expires-at": value} if value else {})).expires_at is None
    owner = "arn:aws:iam::1:user/a"
    assert found(**{"provision:owner": owner, "provision:step": "vpc"}).owner == owner
    assert found(**{"provision:step": "vpc"}).step == "vpc" and found().owner is None and found().step is None


DENIED = [
    ("ec2", "DescribeNatGateways", "UnauthorizedOperation", "ec2:DescribeNatGateways"),
    ("ec2", "DescribeInstances", "UnauthorizedOperation", "ec2:DescribeInstances"),
    ("elbv2", "DescribeTags", "AccessDenied", "elasticloadbalancing:DescribeTags"),
    ("autoscaling", "DescribeAutoScalingGroups", "AccessDenied", "autoscaling:DescribeAutoScalingGroups"),
    ("acm", "ListCertificates", "AccessDeniedException", "acm:ListCertificates"),
    ("s3", "ListBuckets", "AccessDenied", "s3:ListAllMyBuckets"),
    ("s3", "GetBucketTagging", "AccessDenied", "s3:GetBucketTagging"),
    ("iam", "ListRoleTags", "AccessDenied", "iam:ListRoleTags"),
]


def tagged_odds_and_ends():
    """One tagged thing for each per-item read to be made: a target group, a bucket, a role."""
    tags = [{"Key": TAG_STACK, "Value": "lab-d"}]
    vpc = boto3.client("ec2", region_name=REGION).create_vpc(CidrBlock="10.8.0.0/16")["Vpc"]["VpcId"]
    boto3.client("elbv2", region_name=REGION).create_target_group(
        Name="lab-d-frontend", Protocol="HTTP", Port=80, VpcId=vpc, Tags=tags)
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=f"lab-d-assets-{ACCOUNT}-{REGION}")
    s3.put_bucket_tagging(Bucket=f"lab-d-assets-{ACCOUNT}-{REGION}", Tagging={"TagSet": tags})
    boto3.client("iam", region_name=REGION).create_role(
        RoleName=f"lab-d-{REGION}-web", Path="/provision/", AssumeRolePolicyDocument="{}", Tags=tags)


@pytest.mark.parametrize("service,operation,code,action", DENIED, ids=[d[1] for d in DENIED])
def test_a_refused_read_fails_naming_the_iam_action(moto_aws, service, operation, code, action):
    tagged_odds_and_ends()
    deny = (f"before-call.{service}.{operation}", lambda **_: refuse(code, "not authorized", status=403))
    ctx = context(hooks=[deny])
    with pytest.raises(AwsFailure) as failure:
        scan(ctx)
    assert failure.value.code == code
    assert action in failure.value.message and action in failure.value.hint


def test_other_errors_are_not_hidden(moto_aws):
    from botocore.exceptions import ClientError

    ctx = context(hooks=[("before-call.ec2.DescribeSubnets", lambda **_: refuse("InvalidParameterValue", "no"))])
    with pytest.raises(ClientError):
        scan(ctx)


def test_forgotten_and_regions_name_the_refused_action(moto_aws):
    deny = ("before-call.ec2.DescribeAddresses", lambda **_: refuse("UnauthorizedOperation", "no", status=403))
    with pytest.raises(AwsFailure, match="ec2:DescribeAddresses"):
        forgotten(context(hooks=[deny]))
    deny = ("before-call.ec2.DescribeRegions", lambda **_: refuse("UnauthorizedOperation", "no", status=403))
    with pytest.raises(AwsFailure, match="ec2:DescribeRegions"):
        regions(context(hooks=[deny]))


def test_regions_are_the_enabled_ones_sorted(moto_aws):
    names = regions(context())
    assert names == sorted(names) and REGION in names and OTHER_REGION in names and len(names) > 10


def test_scan_in_an_empty_region_is_one_call_per_kind(moto_aws):
    ctx = context()
    assert scan(ctx) == []
    # One list per kind, listeners excepted (none without a tagged load balancer), and kinds whose
    # list is the same call (the same operation and parameters) share it.
    same = {(s.service, s.operation, repr(sorted(s.params.items()))): s for s in SCANNERS if s.parent is None}
    assert sorted(op for _, op in ctx.calls) == sorted(
        ctx.client(s.service).meta.method_to_api_mapping[s.operation] for s in same.values())


def test_every_tagged_step_kind_is_scanned():
    """A new tagged step whose resources `scan` cannot see would survive `cleanup`: fail here."""
    import steps  # noqa: F401  (registers every step)

    deleted_with_their_parent = {"listener_rule"}   # a listener's rules go with it
    # The roles are all IAM roles.
    renamed = {"s3_bucket": "bucket", "codebuild_service_role": "iam_role", "flow_log_delivery_role": "iam_role"}
    tagged = {renamed.get(kind, kind) for kind, cls in REGISTRY.items() if getattr(cls, "tagged", True)}
    assert tagged - deleted_with_their_parent <= set(KINDS)
    assert [s.kind for s in SCANNERS] == list(KINDS)


def test_a_bucket_is_found_without_knowing_the_account(moto_aws):
    """A context that never asked STS for the account still finds the region's buckets."""
    tagged_odds_and_ends()
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=f"lab-q-assets-{ACCOUNT}-{OTHER_REGION}",
                     CreateBucketConfiguration={"LocationConstraint": OTHER_REGION})
    s3.put_bucket_tagging(Bucket=f"lab-q-assets-{ACCOUNT}-{OTHER_REGION}",
                          Tagging={"TagSet": [{"Key": TAG_STACK, "Value": "lab-q"}]})
    s3.create_bucket(Bucket=f"lab-u-assets-{ACCOUNT}-{REGION}")  # untagged: NoSuchTagSet
    ctx = context()
    ctx.account = None
    assert [(f.kind, f.id) for f in scan(ctx) if f.kind == "bucket"] == [
        ("bucket", f"lab-d-assets-{ACCOUNT}-{REGION}")]


def test_the_edge_kinds_are_scanned_and_a_distribution_counts_in_its_stacks_region(make_stack):
    """The web ACL, its log group and the CloudFront distribution carry the stack's tags. CloudFront
    answers the same list from every region: the distribution counts only in the scan of the
    region whose load balancer it serves, so `list --all-regions` shows it once."""
    from provisioner.account.pricing import estimate, load_packaged

    config = StackConfig(zones=["us-east-1a", "us-east-1b"], waf=True, cdn=True)
    make_stack("lab-e", config=config).up(only=["web-acl-association", "cdn-frontend-rule", "assets-bucket"])
    found = [f for f in scan(context()) if f.stack == "lab-e"]
    edge = {f.kind: f for f in found if f.kind in ("web_acl", "waf_log_group", "cloudfront_distribution")}
    assert set(edge) == {"web_acl", "waf_log_group", "cloudfront_distribution"}
    assert edge["waf_log_group"].id == "aws-waf-logs-lab-e"
    assert edge["web_acl"].detail["rules"] == 4
    assert edge["cloudfront_distribution"].detail["domain_name"].endswith(".cloudfront.net")
    assert all(f.step == f.tags["provision:step"] for f in edge.values())

    elsewhere = scan(context(OTHER_REGION))
    assert not [f for f in elsewhere if f.kind == "cloudfront_distribution"]

    book = load_packaged()
    cost = estimate([edge["web_acl"]], REGION, book)
    assert cost.hourly == pytest.approx((5.0 + 4 * 1.0) / 730)
    assert estimate([edge["cloudfront_distribution"], edge["waf_log_group"]], REGION, book).hourly == 0


def test_the_app_and_build_log_groups_are_scanned_with_their_stack(make_stack):
    """Both groups the tool makes (the app's with --monitoring, CodeBuild's) carry the stack's
    tags: `list`, `cleanup` and `reap` see them, priced by what they store."""
    from provisioner.account.pricing import estimate, load_packaged

    config = StackConfig(zones=["us-east-1a", "us-east-1b"], monitoring=True)
    make_stack("lab-l", config=config).up(only=["app-log-group", "build-log-group"])
    # CodeBuild's own group of another project, untagged: not the stack's, not listed.
    boto3.client("logs", region_name=REGION).create_log_group(logGroupName="/aws/codebuild/other-image-build")
    found = {f.kind: f for f in scan(context()) if f.stack == "lab-l"}
    assert found["app_log_group"].id == "/provision/lab-l/app"
    assert found["codebuild_log_group"].id == "/aws/codebuild/lab-l-image-build"
    assert all(f.step == f.tags["provision:step"] for f in found.values())
    assert [f.id for f in scan(context()) if f.id.startswith("/aws/codebuild/other")] == []
    assert estimate([found["app_log_group"]], REGION, load_packaged()).hourly == 0  # empty: nothing stored
