"""Helpers for tests that run the engine in-process on moto: a Stack that runs the commands the
way the CLI does, and scans for what a stack left behind."""

from __future__ import annotations

import boto3

from provisioner.shape.config import StackConfig
from provisioner.engine.context import TAG_STACK, RunContext
from provisioner.engine.engine import Engine
from provisioner.commands.keys import KeyStore
from provisioner.engine.registry import plan_steps
from provisioner.engine.state import StackState, StateFile

from strict import StrictAws

REGION = "us-east-1"
ACCOUNT = "123456789012"
ZONES = ["us-east-1a", "us-east-1b"]
POLL = 0.02


def make_session(strict: StrictAws | None = None, hooks=()):
    """A boto3 session with the strict rules and the test's own event hooks installed."""
    session = boto3.session.Session(region_name=REGION)
    if strict is not None:
        strict.install(session.events)
    for event, handler in hooks:
        # First, so that a before-send hook answers before moto's own handler does.
        session.events.register_first(event, handler)
    return session


class Stack:
    """One stack under test: runs the engine's commands the way the CLI does, in-process."""

    def __init__(self, name: str, state_dir, strict: StrictAws | None, config: StackConfig | None = None,
                 hooks=(), owner: str | None = None, region: str = REGION):
        self.name = name
        self.owner = owner      # the caller's ARN, as the CLI learns it from STS
        self.region = region
        self.state_file = StateFile(state_dir, name)
        self.strict = strict
        self.config = config or StackConfig(zones=list(ZONES))
        self.hooks = list(hooks)  # (event name, handler) registered on every session
        self.last_ctx: RunContext | None = None
        # The stack's SSH key and known hosts beside its state file, as the CLI keeps them.
        self.keys = KeyStore(state_dir, name)

    def session(self):
        return make_session(self.strict, self.hooks)

    def context(self, config: StackConfig | None = None) -> RunContext:
        ctx = RunContext(stack=self.name, region=self.region, config=config or self.config,
                         poll_interval=POLL, session_factory=self.session)
        ctx.account = ACCOUNT
        ctx.owner = self.owner
        ctx.keys = self.keys
        self.last_ctx = ctx
        return ctx

    def engine(self, superset: bool = False, config: StackConfig | None = None, only=None) -> Engine:
        """The engine for this stack; `only` (step names) narrows it to those steps and what
        they depend on, to test one tier without the rest."""
        state = self.state_file.load_for(ACCOUNT, self.region)
        if config is None:
            config = StackConfig.from_dict(state.config) if state and state.config else self.config
        shape = config
        if superset:
            config = config.superset()
        ctx = self.context(config)
        if state is None:
            state = StackState(stack=self.name, account=ACCOUNT, region=self.region, config=config.to_dict())
        ctx.generation = state.generation
        steps, retired = plan_steps(config)
        if only is not None:
            # What the named steps depend on in this stack's own shape: the superset's extra
            # edges (with --cdn the bucket depends on the distribution) must not pull another
            # tier into a test of one.
            steps, retired = closure(steps, only, shape=plan_steps(shape)[0] if superset else None), {}
        return Engine(ctx, steps, state, self.state_file, retired=retired)

    def up(self, config: StackConfig | None = None, only=None):
        engine = self.engine(config=config, only=only)
        engine.state.config = engine.ctx.config.to_dict()
        return engine.up()

    def down(self, only=None):
        return self.engine(superset=True, only=only).down()

    def plan(self, only=None):
        return self.engine(only=only).plan()

    def status(self, only=None):
        return self.engine(only=only).status()

    def mutating_calls(self):
        from provisioner.engine.context import is_mutating

        return [c for c in self.last_ctx.calls if is_mutating(c[1])]


def closure(steps: dict, names, shape: dict | None = None) -> dict:
    """The named steps and everything they depend on, in the engine's order; the dependencies as
    `shape`'s steps have them, where it has the step."""
    shape = shape or {}
    wanted, todo = set(), list(names)
    while todo:
        name = todo.pop()
        if name not in wanted:
            wanted.add(name)
            todo.extend((shape.get(name) or steps[name]).depends_on)
    return {n: s for n, s in steps.items() if n in wanted}


def outcomes(results) -> dict[str, str]:
    return {r.name: r.outcome for r in results}


# Every network resource type a stack makes, as (describe call, result key, id field).
NETWORK_RESOURCES = (
    ("describe_vpcs", "Vpcs", "VpcId"),
    ("describe_subnets", "Subnets", "SubnetId"),
    ("describe_internet_gateways", "InternetGateways", "InternetGatewayId"),
    ("describe_route_tables", "RouteTables", "RouteTableId"),
    ("describe_security_groups", "SecurityGroups", "GroupId"),
    ("describe_addresses", "Addresses", "AllocationId"),
    ("describe_nat_gateways", "NatGateways", "NatGatewayId"),
)


def live_network_resources(ec2=None, region: str = REGION):
    """(result key, id, tags) of every network resource in the region that is not deleted."""
    ec2 = ec2 or boto3.client("ec2", region_name=region)
    for op, key, id_key in NETWORK_RESOURCES:
        for item in getattr(ec2, op)()[key]:
            if item.get("State") != "deleted":
                yield key, item[id_key], {t["Key"]: t["Value"] for t in item.get("Tags", [])}


def _tags(pairs) -> dict:
    return {t["Key"]: t["Value"] for t in pairs or []}


def live_resources(region: str = REGION):
    """(kind, id, tags) of every live resource of every type a stack makes: the network, then
    instances, launch templates, volumes, load balancers, target groups, Auto Scaling Groups,
    IAM roles and instance profiles, ACM certificates, S3 buckets, ECR repositories, CodeBuild
    projects and CloudWatch Logs groups."""
    from botocore.exceptions import ClientError

    yield from live_network_resources(region=region)
    ec2 = boto3.client("ec2", region_name=region)
    for reservation in ec2.describe_instances()["Reservations"]:
        for i in reservation["Instances"]:
            if i["State"]["Name"] != "terminated":
                yield "Instances", i["InstanceId"], _tags(i.get("Tags"))
    for t in ec2.describe_launch_templates()["LaunchTemplates"]:
        yield "LaunchTemplates", t["LaunchTemplateId"], _tags(t.get("Tags"))
    for v in ec2.describe_volumes()["Volumes"]:
        yield "Volumes", v["VolumeId"], _tags(v.get("Tags"))
    elb = boto3.client("elbv2", region_name=region)
    arns = [(k, x["LoadBalancerArn"]) for k, x in
            (("LoadBalancers", lb) for lb in elb.describe_load_balancers()["LoadBalancers"])]
    arns += [("TargetGroups", tg["TargetGroupArn"]) for tg in elb.describe_target_groups()["TargetGroups"]]
    for kind, arn in arns:
        described = elb.describe_tags(ResourceArns=[arn])["TagDescriptions"]
        yield kind, arn, _tags(described[0]["Tags"] if described else [])
    autoscaling = boto3.client("autoscaling", region_name=region)
    for g in autoscaling.describe_auto_scaling_groups()["AutoScalingGroups"]:
        yield "AutoScalingGroups", g["AutoScalingGroupName"], _tags(g.get("Tags"))
    iam = boto3.client("iam", region_name=region)
    for role in iam.list_roles()["Roles"]:
        yield "Roles", role["RoleName"], _tags(iam.list_role_tags(RoleName=role["RoleName"])["Tags"])
    for profile in iam.list_instance_profiles()["InstanceProfiles"]:
        name = profile["InstanceProfileName"]
        yield "InstanceProfiles", name, _tags(iam.list_instance_profile_tags(InstanceProfileName=name)["Tags"])
    acm = boto3.client("acm", region_name=region)
    for cert in acm.list_certificates()["CertificateSummaryList"]:
        arn = cert["CertificateArn"]
        yield "Certificates", arn, _tags(acm.list_tags_for_certificate(CertificateArn=arn).get("Tags"))
    s3 = boto3.client("s3", region_name=region)
    for bucket in s3.list_buckets()["Buckets"]:
        try:
            tags = s3.get_bucket_tagging(Bucket=bucket["Name"])["TagSet"]
        except ClientError:
            tags = []
        yield "Buckets", bucket["Name"], _tags(tags)
    ecr = boto3.client("ecr", region_name=region)
    for repository in ecr.describe_repositories()["repositories"]:
        arn = repository["repositoryArn"]
        yield "Repositories", arn, _tags(ecr.list_tags_for_resource(resourceArn=arn).get("tags"))
    codebuild = boto3.client("codebuild", region_name=region)
    names = codebuild.list_projects()["projects"]
    for project in codebuild.batch_get_projects(names=names)["projects"] if names else []:
        yield "Projects", project["name"], {t["key"]: t["value"] for t in project.get("tags") or []}
    logs = boto3.client("logs", region_name=region)
    for page in logs.get_paginator("describe_log_groups").paginate():
        for group in page["logGroups"]:
            name = group["logGroupName"]
            kind = ("AppLogGroups" if name.startswith("/provision/") else
                    "CodeBuildLogGroups" if name.startswith("/aws/codebuild/") else
                    "WafLogGroups" if name.startswith("aws-waf-logs-") else "LogGroups")
            yield kind, name, logs.list_tags_log_group(logGroupName=name).get("tags", {})


def tagged_leftovers(stack: str, region: str = REGION) -> list[str]:
    """Every resource still carrying the stack's tag, checked on the client side (moto ignores
    some tag filters)."""
    return [rid for _, rid, tags in live_resources(region=region) if tags.get(TAG_STACK) == stack]


def count_tagged(stack: str, region: str = REGION) -> dict[str, int]:
    """How many live resources carry each provision:step tag of the stack. Instances and their
    volumes carry the Auto Scaling Group's tags (one per instance), so they are counted apart."""
    counts: dict[str, int] = {}
    for kind, _, tags in live_resources(region=region):
        if tags.get(TAG_STACK) == stack and kind not in ("Instances", "Volumes"):
            counts[tags["provision:step"]] = counts.get(tags["provision:step"], 0) + 1
    return counts
