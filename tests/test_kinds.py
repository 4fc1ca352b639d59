"""Everything about a kind lives in its step module: the inventory, the price line, the quota
preflight and `provision policy` read the steps' declarations, and a step class alone (here, in
a test module) is enough for a new kind to be listed, priced, cleaned up and allowed."""

from __future__ import annotations

import json
import threading

import boto3
import pytest

from provisioner.engine import registry
from provisioner.engine.context import TAG_STACK, RunContext
from provisioner.engine.kinds import Iam, ItemTags, Listing, PriceKey, actions
from provisioner.account.policy import allows, iam_actions
from provisioner.engine.registry import Step

from stacks import REGION
from test_cli import cli, state_dir  # noqa: F401  (fixtures)
from test_fleet import hooks  # noqa: F401  (fixtures)


# -- a made-up kind: an SNS topic, declared in one class ----------------------------------------------

def topic_charges(item, prices, region):
    return [("alert topic", 1, "topic", prices["alert_topic_hour"])], []


class AlertTopic(Step):
    """A made-up kind for these tests: nothing outside this class knows it."""

    kind = "alert_topic"
    gone_codes = frozenset({"NotFound"})
    listing = Listing("alert_topic", "sns", "list_topics", "Topics", "TopicArn",
                      tags=ItemTags("list_tags_for_resource", "ResourceArn", "Tags"), price=topic_charges,
                      price_keys=(PriceKey("alert_topic_hour", "alert topic", "hour", lambda *_: None, default=0.25),))
    iam = Iam(create=(actions("sns:CreateTopic", "sns:TagResource"),),
              read=(actions("sns:ListTopics", "sns:ListTagsForResource"),),
              delete=(actions("sns:DeleteTopic"),))

    def __init__(self):
        # Not "alert-topic", the monitoring tier's own step (steps/monitoring/alert_topic.py).
        super().__init__("made-up-topic")

    def find_all(self, ctx, known_id):
        from provisioner.engine.context import Resource

        sns = ctx.client("sns")
        found = []
        for topic in sns.list_topics()["Topics"]:
            tags = sns.list_tags_for_resource(ResourceArn=topic["TopicArn"])["Tags"]
            if topic["TopicArn"] == known_id:
                ctx.claim(self.name, known_id, tags, "topic")
            if ctx.owns(tags, self.name):
                found.append(Resource(id=topic["TopicArn"], attrs={}, raw=topic))
        return found

    def create(self, ctx):
        from provisioner.engine.context import Resource

        arn = ctx.client("sns").create_topic(Name=f"{ctx.stack}-made-up", Tags=ctx.tags(self.name))["TopicArn"]
        return Resource(id=arn, attrs={}, raw={"TopicArn": arn})

    def delete(self, ctx, resource):
        ctx.client("sns").delete_topic(TopicArn=resource.id)


@pytest.fixture
def made_up_kind():
    registry.load_steps()
    registry.register(AlertTopic)
    try:
        yield AlertTopic
    finally:
        registry.REGISTRY.pop(AlertTopic.kind, None)


def topics():
    return boto3.client("sns", region_name=REGION).list_topics()["Topics"]


def test_a_step_class_alone_is_listed_priced_allowed_and_cleaned_up(made_up_kind, hooks, state_dir):  # noqa: F811
    built = cli("up", "--stack", "news", "--no-wait", state_dir=state_dir)
    assert built.exit_code == 0, built.output
    assert len(topics()) == 1
    # `list` counts it and prices it (the step's own default figure: the table has none).
    listed = json.loads(cli("list", "--json", state_dir=state_dir).stdout)
    stack = next(s for s in listed["stacks"] if s["stack"] == "news")
    without = json.loads(cli("list", "--json", state_dir=state_dir).stdout)  # same call, same figure
    assert stack["cost_per_hour"] == next(s for s in without["stacks"] if s["stack"] == "news")["cost_per_hour"]
    from provisioner.account.inventory import Found
    from provisioner.account.pricing import estimate, load_packaged

    line = estimate([Found("news", REGION, "alert_topic", "arn", {}, None)], REGION, load_packaged())
    assert [(l.label, l.hourly) for l in line.lines] == [("alert topic", 0.25)]
    dry_run = cli("cleanup", "--stack", "news", state_dir=state_dir)
    assert "alert_topic" in dry_run.text, dry_run.output
    # `policy` allows what it does.
    policy = json.loads(cli("policy", "--stack", "news", "--json", state_dir=state_dir).stdout)
    assert allows(policy, "sns:CreateTopic") and allows(policy, "sns:DeleteTopic")
    assert allows(policy, "sns:ListTopics") and allows(policy, "sns:ListTagsForResource")
    # `cleanup` (the stack found by its tags alone) deletes it, and nothing of the stack is left.
    cleaned = cli("cleanup", "--stack", "news", "--yes", state_dir=state_dir + "-elsewhere")
    assert cleaned.exit_code == 0, cleaned.output
    assert topics() == []
    assert "0 resources left" in cleaned.text


def test_a_step_without_an_inventory_listing_fails_the_registry_check_by_name():
    class Forgotten(Step):
        kind = "forgotten_thing"
        gone_codes = frozenset()
        iam = Iam(create=(actions("sns:CreateTopic"),), delete=(actions("sns:DeleteTopic"),))

    problems = registry.declaration_problems([Forgotten])
    assert len(problems) == 1 and "step Forgotten (kind forgotten_thing" in problems[0]
    assert "no inventory listing" in problems[0] and "never see its resources" in problems[0]

    class Unpriced(Step):
        kind = "unpriced_thing"
        gone_codes = frozenset()
        listing = Listing("unpriced_thing", "sns", "list_topics", "Topics", "TopicArn")

    problems = registry.declaration_problems([Unpriced])
    assert any("declares no price" in p for p in problems)
    assert any("declares no IAM actions" in p for p in problems)

    class Orphan(Step):
        kind = "orphan_link"
        gone_codes = frozenset()
        found_through = "nothing_listed"
        iam = Iam(create=(actions("ec2:CreateTags"),), delete=(actions("ec2:DeleteTags"),))

    assert registry.declaration_problems([Orphan]) == [
        "step Orphan (kind orphan_link, test_kinds) is found through 'nothing_listed', which no step lists"]


def test_every_registered_step_declares_what_the_tool_needs():
    assert registry.declaration_problems() == []
    # Each inventory kind is declared once (an Auto Scaling Group's instances are the bastion's kind).
    kinds = [listing.kind for listing in registry.listings()]
    assert len(kinds) == len(set(kinds))
    assert {"vpc", "nat_gateway", "instance", "volume", "bucket", "iam_role"} <= set(kinds)


def test_the_packaged_price_table_has_every_declared_figure():
    from provisioner.account.pricing import load_packaged, price_keys

    book = load_packaged()
    for key in price_keys():
        for name in book.names():
            assert book.region(name).get(key.name) is not None, (key.name, name)


# -- the policy allows every call of up, status, list and down -----------------------------------------

@pytest.fixture
def operations(monkeypatch):
    """Every AWS operation the CLI's contexts make, as the IAM action(s) that authorize it."""
    seen: set[tuple[str, ...]] = set()
    lock = threading.Lock()
    original = RunContext._before_call

    def before_call(self, model, context, **kwargs):
        with lock:
            seen.add(iam_actions(model.service_model.signing_name, model.name))
        return original(self, model, context, **kwargs)

    monkeypatch.setattr(RunContext, "_before_call", before_call)
    return seen


@pytest.mark.parametrize("shape", [(), ("--bastion", "--ssh-cidr", "203.0.113.7/32", "--nat-per-az"),
                                   ("--database", "mysql", "--catalog", "dynamodb"),
                                   ("--cache", "redis", "--shared-files"),
                                   ("--waf", "--cdn", "--block-countries", "DE")])
def test_the_printed_policy_allows_every_call_of_a_full_lifecycle(hooks, state_dir, operations, shape,  # noqa: F811
                                                                   monkeypatch):
    # The CDN's origin check refuses --cdn outside the sandbox (see runner.check_cdn_origin);
    # here every call a CDN stack makes is what is under test.
    from provisioner.commands import runner

    monkeypatch.setattr(runner, "check_cdn_origin", lambda run: None)
    printed = cli("policy", "--stack", "pol", *shape, "--json", state_dir=state_dir)
    assert printed.exit_code == 0, printed.output
    policy = json.loads(printed.stdout)
    for args in (("up", "--no-wait", *shape), ("plan",), ("status",), ("outputs",), ("down", "--yes")):
        result = cli(*args, "--stack", "pol", state_dir=state_dir)
        assert result.exit_code == 0, (args, result.output)
    assert cli("list", state_dir=state_dir).exit_code == 0
    assert operations, "no operation was recorded"
    refused = sorted(a for needed in operations for a in needed if not allows(policy, a))
    assert refused == [], f"the printed policy does not allow {refused}"


def test_the_policy_is_scoped_to_the_stack(hooks, state_dir):  # noqa: F811
    policy = json.loads(cli("policy", "--stack", "pol", "--account", "111122223333", "--json",
                            state_dir=state_dir).stdout)
    by_action: dict[str, list] = {}
    for statement in policy["Statement"]:
        for action in statement["Action"]:
            by_action.setdefault(action, []).append(statement)
    # Each of the stack's roles to its own service only: the instances' to EC2, the build's to CodeBuild.
    pass_role = {s["Resource"]: s["Condition"] for s in by_action["iam:PassRole"]}
    assert pass_role == {
        f"arn:aws:iam::111122223333:role/provision/pol-{REGION}-web":
            {"StringEquals": {"iam:PassedToService": "ec2.amazonaws.com"}},
        f"arn:aws:iam::111122223333:role/provision/pol-{REGION}-build":
            {"StringEquals": {"iam:PassedToService": "codebuild.amazonaws.com"}}}
    linked = {s["Condition"]["StringEquals"]["iam:AWSServiceName"] for s in by_action["iam:CreateServiceLinkedRole"]}
    assert linked == {"elasticloadbalancing.amazonaws.com", "autoscaling.amazonaws.com"}
    for action in ("iam:DeleteRole", "s3:DeleteBucket", "elasticloadbalancing:DeleteLoadBalancer",
                   "autoscaling:DeleteAutoScalingGroup", "codebuild:DeleteProject"):
        for statement in by_action[action]:
            resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            assert all("pol-" in r for r in resources), (action, resources)
    # IAM names are exact: stack "pol" may not touch stack "pol-2"'s role.
    assert sorted(s["Resource"] for s in by_action["iam:DeleteRole"]) == [
        f"arn:aws:iam::111122223333:role/provision/pol-{REGION}-build",
        f"arn:aws:iam::111122223333:role/provision/pol-{REGION}-flow-logs",
        f"arn:aws:iam::111122223333:role/provision/pol-{REGION}-web"]
    # The repository by its exact name too.
    assert [s["Resource"] for s in by_action["ecr:DeleteRepository"]] == [
        f"arn:aws:ecr:{REGION}:111122223333:repository/provision/pol"]
    # Nothing grants IAM or S3 wholesale.
    assert not any(a in ("iam:*", "s3:*", "*") for a in by_action)


def test_policy_without_credentials_names_any_account_with_a_warning(state_dir, monkeypatch):  # noqa: F811
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    result = cli("policy", "--stack", "pol", "--json", state_dir=state_dir)
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert any(f"arn:aws:iam::*:role/provision/pol-{REGION}-web" == s["Resource"] for s in document["Statement"])
    bad = cli("policy", "--account", "12345", state_dir=state_dir)
    assert bad.exit_code == 2 and "12-digit" in bad.text


def test_list_counts_every_resource_of_a_stack_with_every_option_and_cleanup_leaves_none(hooks, state_dir):  # noqa: F811
    from pathlib import Path

    from provisioner.shape.config import StackConfig

    every = ("--bastion", "--ssh-cidr", "203.0.113.7/32", "--nat-per-az")
    built = cli("up", "--stack", "every", "--no-wait", *every, state_dir=state_dir)
    assert built.exit_code == 0, built.output
    state = json.loads((Path(state_dir) / "every.json").read_text())
    steps = registry.build_steps(StackConfig.from_dict(state["config"]))
    # The state's resources of listed kinds, and what the group and the bastion launched besides.
    in_state = [name for name in state["resources"] if type(steps[name]).listing is not None]
    ec2 = boto3.client("ec2", region_name=REGION)
    mine = [{"Name": f"tag:{TAG_STACK}", "Values": ["every"]}]
    instances = [i for r in ec2.describe_instances(Filters=mine)["Reservations"] for i in r["Instances"]
                 if i["State"]["Name"] != "terminated"]
    volumes = ec2.describe_volumes(Filters=mine)["Volumes"]
    bastion = state["resources"]["bastion"]["id"]
    expected = len(in_state) + len([i for i in instances if i["InstanceId"] != bastion]) + len(volumes)
    listed = json.loads(cli("list", "--json", state_dir=state_dir).stdout)
    assert {s["stack"]: s["resources"] for s in listed["stacks"]} == {"every": expected}
    cleaned = cli("cleanup", "--stack", "every", "--yes", state_dir=state_dir)
    assert cleaned.exit_code == 0, cleaned.output
    assert "0 resources left" in cleaned.text
    assert json.loads(cli("list", "--json", state_dir=state_dir).stdout)["stacks"] == []


def test_the_retry_tables_are_the_steps_codes_and_lose_none_of_the_old_ones():
    from provisioner.engine import retries

    # What the one hand-kept table held before the steps declared their codes.
    before = {"InvalidVpcID.NotFound", "InvalidSubnetID.NotFound", "InvalidInternetGatewayID.NotFound",
              "InvalidRouteTableID.NotFound", "InvalidAllocationID.NotFound", "InvalidAssociationID.NotFound",
              "InvalidGroup.NotFound", "InvalidGroupId.NotFound", "InvalidNetworkInterfaceID.NotFound",
              "InvalidNatGatewayID.NotFound", "NatGatewayNotFound", "InvalidInstanceID.NotFound",
              "InvalidLaunchTemplateId.NotFound", "InvalidLaunchTemplateName.NotFoundException",
              "InvalidKeyPair.NotFound", "NoSuchEntity", "TargetGroupNotFound", "LoadBalancerNotFound",
              "ListenerNotFound", "CertificateNotFound"}
    declared = set().union(*(step.not_found_codes for step in registry.load_steps().values()))
    assert retries.not_found_codes() == before | declared | retries.BASE_NOT_FOUND_CODES
    assert retries.not_found_codes() >= before
    assert retries.gone_codes() >= before | {"Gateway.NotAttached", "InvalidPermission.NotFound",
                                             "InvalidRoute.NotFound", "NoSuchBucket", "NoSuchKey", "RuleNotFound",
                                             "ResourceNotFoundException"}
    # A step's own gone codes count as gone everywhere (a made-up kind's too).
    assert all(step.gone_codes <= retries.gone_codes() for step in registry.load_steps().values())


def test_a_kinds_own_wait_is_its_step_figure_scaled(monkeypatch):
    from steps.network.nat_gateway import NatGateway

    from provisioner.engine.context import RunContext as Ctx
    from provisioner.shape.config import StackConfig

    ctx = Ctx(stack="t", region=REGION, config=StackConfig(), timeout_scale=2)
    assert ctx.timeout(NatGateway.create_timeout) == 1800
    assert ctx.timeout("dependency") == 2400
