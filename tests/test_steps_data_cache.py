"""The cache on moto with the strict fixture: the AUTH token in Secrets Manager (never in state,
outputs or the log), the subnet group on the data subnets, the replication group (two nodes in
the two zones, encrypted, Multi-AZ) waited for through `creating`; a second `up` that changes
nothing; a removed tag put back; `down` in the order AWS requires (twice); found again by its
tags without state; a secret scheduled for deletion restored if it is ours and refused if not;
the account scan, its price, and `cleanup`."""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.exceptions import ClientError

from provisioner.account.inventory import scan
from provisioner.account.pricing import estimate, load_packaged
from provisioner.engine.context import TAG_STACK, TAG_STEP, RunContext
from provisioner.engine.errors import ConfigError
from provisioner.shape.config import StackConfig

from stacks import ACCOUNT, REGION, ZONES, make_session
from steps.data.cache_auth_token import cache_policy_statements
from test_cli import cli, state_dir  # noqa: F401  (fixtures)
from test_fleet import hooks  # noqa: F401  (fixtures)

CACHE_STEPS = ("cache-auth-token", "cache-subnet-group", "cache")
ONLY = ("cache",)


def cache_config(**more) -> StackConfig:
    return StackConfig(zones=list(ZONES), cache="redis", **more)


def _tags(pairs):
    return {t["Key"]: t["Value"] for t in pairs or []}


def _ok(results):
    assert all(r.ok for r in results), [(r.name, r.outcome, r.detail) for r in results if not r.ok]
    return {r.name: r for r in results}


def _order_refusals(strict):
    return [r for r in strict.refusals if r[2] == "order"]


def _elasticache():
    return boto3.client("elasticache", region_name=REGION)


def _secrets():
    return boto3.client("secretsmanager", region_name=REGION)


def _replication_groups():
    return _elasticache().describe_replication_groups()["ReplicationGroups"]


class Requests:
    """The parameters of the calls a run made, as botocore built them (before signing)."""

    def __init__(self):
        self.seen: list[tuple[str, dict]] = []

    def __call__(self, params, model, **_):
        self.seen.append((model.name, dict(params)))

    def of(self, operation):
        return [p for name, p in self.seen if name == operation]


@pytest.fixture
def requests():
    return Requests()


@pytest.fixture
def built(make_stack, strict, requests):
    stack = make_stack(config=cache_config(), hooks=[("provide-client-params.elasticache", requests)])
    results = _ok(stack.up(only=ONLY))
    assert {results[n].outcome for n in CACHE_STEPS} == {"created"}
    assert _order_refusals(strict) == []
    return stack


# -- up ----------------------------------------------------------------------------------------------

def test_up_makes_an_encrypted_multi_az_redis_with_its_token_from_the_secret(built, requests):
    resources = built.last_ctx.resources
    (group,) = _replication_groups()
    assert group["ReplicationGroupId"] == "stylesphere-cache" == resources["cache"].id
    assert group["CacheNodeType"] == "cache.t4g.micro"
    assert (group["AutomaticFailover"], group["MultiAZ"]) == ("enabled", "enabled")
    assert group["TransitEncryptionEnabled"] and group["AtRestEncryptionEnabled"] and group["AuthTokenEnabled"]
    assert group["Engine"] == "redis" and group["ClusterEnabled"] is False

    (create,) = requests.of("CreateReplicationGroup")
    assert create["NumCacheClusters"] == 2
    assert create["PreferredCacheClusterAZs"] == ZONES
    assert create["SecurityGroupIds"] == [resources["cache-security-group"].id]
    assert create["CacheSubnetGroupName"] == "stylesphere-cache"
    token = _secrets().get_secret_value(SecretId=resources["cache-auth-token"].id)["SecretString"]
    assert create["AuthToken"] == token
    # ElastiCache's rules for an AUTH token.
    assert 16 <= len(token) <= 128 and token.isprintable() and not set(token) & set('@"/ ')

    (subnet_group,) = _elasticache().describe_cache_subnet_groups()["CacheSubnetGroups"]
    assert sorted(s["SubnetIdentifier"] for s in subnet_group["Subnets"]) == sorted(
        resources[f"data-subnet-{n}"].id for n in (1, 2))

    # Waited for through `creating`: the endpoint is the one AWS gives once it is available.
    outputs = built.engine().state.outputs
    assert outputs["cache_host"] == group["NodeGroups"][0]["PrimaryEndpoint"]["Address"]
    assert outputs["cache_port"] == 6379
    assert outputs["cache_auth_token_secret_arn"] == resources["cache-auth-token"].id


def test_every_cache_resource_is_tagged_at_creation(built):
    arns = {"cache": _replication_groups()[0]["ARN"],
            "cache-subnet-group": _elasticache().describe_cache_subnet_groups()["CacheSubnetGroups"][0]["ARN"]}
    for name, arn in arns.items():
        tags = _tags(_elasticache().list_tags_for_resource(ResourceName=arn)["TagList"])
        assert tags["Name"] == f"stylesphere-{name}" and tags[TAG_STEP] == name and tags[TAG_STACK] == "stylesphere"
    secret = _secrets().describe_secret(SecretId="provision/stylesphere/cache-auth-token")
    assert _tags(secret["Tags"])[TAG_STEP] == "cache-auth-token"
    assert "AddTagsToResource" not in [op for _, op in built.last_ctx.calls]


def test_the_token_is_never_in_state_outputs_or_status(built):
    token = _secrets().get_secret_value(SecretId="provision/stylesphere/cache-auth-token")["SecretString"]
    assert token not in built.state_file.path.read_text()
    assert token not in json.dumps(built.engine().state.outputs)
    status = built.status(only=ONLY)
    assert token not in " ".join(f"{r.detail} {r.resource_id}" for r in status)
    assert token not in repr(built.last_ctx.resources)


def test_a_second_up_changes_nothing(built):
    results = _ok(built.up(only=ONLY))
    assert {results[n].outcome for n in CACHE_STEPS} == {"kept"}
    assert built.mutating_calls() == []


def test_a_removed_tag_is_put_back(built):
    arn = _replication_groups()[0]["ARN"]
    _elasticache().remove_tags_from_resource(ResourceName=arn, TagKeys=[TAG_STEP])
    results = _ok(built.up(only=ONLY))
    assert results["cache"].outcome == "updated"
    assert _tags(_elasticache().list_tags_for_resource(ResourceName=arn)["TagList"])[TAG_STEP] == "cache"


def test_up_refuses_a_replication_group_of_the_name_that_is_not_the_stacks(make_stack):
    _elasticache().create_replication_group(ReplicationGroupId="stylesphere-cache", ReplicationGroupDescription="x",
                                            Engine="redis", CacheNodeType="cache.t4g.micro")
    stack = make_stack(config=cache_config())
    with pytest.raises(ConfigError, match="replication group named stylesphere-cache exists"):
        stack.up(only=ONLY)


# -- down --------------------------------------------------------------------------------------------

def test_down_waits_for_the_cache_before_its_subnet_group_subnets_and_group(built, strict):
    results = _ok(built.down(only=ONLY))
    assert {results[n].outcome for n in CACHE_STEPS} == {"deleted"}
    assert _order_refusals(strict) == []
    assert _replication_groups() == []
    assert _elasticache().describe_cache_subnet_groups()["CacheSubnetGroups"] == []
    # Deleted at once, not scheduled: the name is free for the next `up`.
    assert _secrets().list_secrets(IncludePlannedDeletion=True)["SecretList"] == []
    calls = [op for _, op in built.last_ctx.calls]
    assert calls.index("DeleteReplicationGroup") < calls.index("DeleteCacheSubnetGroup") < calls.index("DeleteSubnet")
    again = _ok(built.down(only=ONLY))
    assert {again[n].outcome for n in CACHE_STEPS} == {"absent"}


def test_the_stack_is_found_by_its_tags_without_state_and_torn_down(built, strict):
    ids = {n: built.last_ctx.resources[n].id for n in CACHE_STEPS}
    built.state_file.remove()
    status = {r.name: r for r in built.status(only=ONLY)}
    assert {n: status[n].resource_id for n in CACHE_STEPS} == ids
    assert {status[n].outcome for n in CACHE_STEPS} == {"present"}
    _ok(built.down(only=ONLY))
    assert _replication_groups() == [] and _order_refusals(strict) == []


def test_a_secret_scheduled_for_deletion_is_restored_when_it_is_the_stacks(built):
    arn = built.last_ctx.resources["cache-auth-token"].id
    token = _secrets().get_secret_value(SecretId=arn)["SecretString"]
    # Someone deleted the secret with the default recovery window: its name stays taken.
    _secrets().delete_secret(SecretId=arn, RecoveryWindowInDays=7)
    results = _ok(built.up(only=ONLY))
    assert results["cache-auth-token"].outcome == "created"
    assert ("secretsmanager", "RestoreSecret") in built.last_ctx.calls
    assert built.last_ctx.resources["cache-auth-token"].id == arn
    assert _secrets().get_secret_value(SecretId=arn)["SecretString"] == token


def test_a_secret_of_the_name_scheduled_for_deletion_that_is_not_the_stacks_is_refused(make_stack):
    arn = _secrets().create_secret(Name="provision/stylesphere/cache-auth-token", SecretString="x" * 32)["ARN"]
    _secrets().delete_secret(SecretId=arn, RecoveryWindowInDays=7)
    stack = make_stack(config=cache_config())
    with pytest.raises(ConfigError, match="scheduled for deletion"):
        stack.up(only=ONLY)


# -- what the strict fixture refuses ------------------------------------------------------------------

def test_strict_rules_refuse_what_aws_refuses_while_the_cache_exists(built, strict):
    session = make_session(strict)
    resources = built.last_ctx.resources
    with pytest.raises(ClientError) as raised:
        session.client("elasticache").delete_cache_subnet_group(CacheSubnetGroupName="stylesphere-cache")
    assert raised.value.response["Error"]["Code"] == "CacheSubnetGroupInUse"
    with pytest.raises(ClientError) as raised:
        session.client("ec2").delete_subnet(SubnetId=resources["data-subnet-1"].id)
    assert raised.value.response["Error"]["Code"] == "DependencyViolation"
    with pytest.raises(ClientError) as raised:
        session.client("ec2").delete_security_group(GroupId=resources["cache-security-group"].id)
    assert raised.value.response["Error"]["Code"] == "DependencyViolation"
    # A group being deleted still holds them, for a while (LINGERING: the tool must wait).
    session.client("elasticache").delete_replication_group(ReplicationGroupId="stylesphere-cache")
    with pytest.raises(ClientError) as raised:
        session.client("elasticache").delete_cache_subnet_group(CacheSubnetGroupName="stylesphere-cache")
    assert raised.value.response["Error"]["Code"] == "CacheSubnetGroupInUse"
    assert [r[2] for r in strict.refusals][-1] == "lingering"
    strict.refusals.clear()  # made on purpose here


def test_a_new_replication_group_is_creating_and_cannot_be_deleted_yet(make_stack, strict):
    stack = make_stack(config=cache_config())
    _ok(stack.up(only=("cache-subnet-group",)))
    session = make_session(strict)
    elasticache = session.client("elasticache")
    group = elasticache.create_replication_group(
        ReplicationGroupId="other-cache", ReplicationGroupDescription="x", Engine="redis",
        CacheNodeType="cache.t4g.micro", CacheSubnetGroupName="stylesphere-cache")["ReplicationGroup"]
    assert group["Status"] == "creating"
    described = elasticache.describe_replication_groups(ReplicationGroupId="other-cache")["ReplicationGroups"][0]
    assert described["Status"] == "creating" and "PrimaryEndpoint" not in described["NodeGroups"][0]
    with pytest.raises(ClientError) as raised:
        elasticache.delete_replication_group(ReplicationGroupId="other-cache")
    assert raised.value.response["Error"]["Code"] == "InvalidReplicationGroupState"
    strict.refusals.clear()


# -- the account scan, its price, cleanup and the instance role ----------------------------------------

def test_scan_finds_and_prices_the_cache(built):
    ctx = RunContext(stack="whoever", region=REGION, config=StackConfig(), session_factory=lambda: make_session())
    ctx.account = ACCOUNT
    found = {f.kind: f for f in scan(ctx) if f.stack == "stylesphere" and f.kind in
             ("replication_group", "cache_subnet_group", "secret")}
    assert set(found) == {"replication_group", "cache_subnet_group", "secret"}
    assert found["replication_group"].step == "cache" and found["replication_group"].created is not None
    assert found["replication_group"].detail["node_type"] == "cache.t4g.micro"
    book = load_packaged()
    cost = estimate(list(found.values()), REGION, book)
    lines = {line.label: line.quantity for line in cost.lines}
    assert lines["ElastiCache cache.t4g.micro"] == 2
    assert lines["Secrets Manager secret"] == 1
    assert cost.hourly == pytest.approx(2 * 0.016 + 0.40 / 730)


def test_cleanup_sees_and_deletes_the_cache_without_state(hooks, state_dir):  # noqa: F811
    from pathlib import Path

    built = cli("up", "--stack", "lab", "--no-wait", "--cache", "redis", state_dir=state_dir)
    assert built.exit_code == 0, built.output
    (Path(state_dir) / "lab.json").unlink()
    listed = json.loads(cli("list", "--json", state_dir=state_dir).stdout)
    assert [s["stack"] for s in listed["stacks"]] == ["lab"]
    cleaned = cli("cleanup", "--stack", "lab", "--yes", state_dir=state_dir)
    assert cleaned.exit_code == 0, cleaned.output
    assert "0 resources left" in cleaned.text
    assert _replication_groups() == [] and _elasticache().describe_cache_subnet_groups()["CacheSubnetGroups"] == []
    assert _secrets().list_secrets(IncludePlannedDeletion=True)["SecretList"] == []


def test_the_instance_role_may_read_the_token_and_nothing_else(built):
    (statement,) = cache_policy_statements(built.last_ctx)
    assert statement["Action"] == "secretsmanager:GetSecretValue"
    assert statement["Resource"] == built.last_ctx.resources["cache-auth-token"].id
    ctx = RunContext(stack="lab", region=REGION, config=cache_config())
    ctx.account = ACCOUNT
    (before,) = cache_policy_statements(ctx)
    assert before["Resource"] == (f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:"
                                  "provision/lab/cache-auth-token-??????")


def test_a_new_node_type_is_applied_in_place(built):
    endpoint = built.engine().state.outputs["cache_host"]
    results = _ok(built.up(config=cache_config(cache_node_type="cache.t4g.small"), only=ONLY))
    assert results["cache"].outcome == "updated"
    assert results["cache"].changes == ["node type cache.t4g.micro -> cache.t4g.small (online, minutes)"]
    (group,) = _replication_groups()
    assert group["CacheNodeType"] == "cache.t4g.small"
    assert group["ReplicationGroupId"] == built.last_ctx.resources["cache"].id
    assert built.engine().state.outputs["cache_host"] == endpoint


def test_a_group_without_encryption_is_a_conflict_not_adopted_silently(make_stack, strict):
    stack = make_stack(config=cache_config())
    _ok(stack.up(only=("cache-auth-token", "cache-subnet-group", "cache-security-group")))
    ctx = stack.last_ctx
    # Made by hand with the stack's tags but no encryption (as if edited outside the tool).
    _elasticache().create_replication_group(
        ReplicationGroupId="stylesphere-cache", ReplicationGroupDescription="x", Engine="redis",
        CacheNodeType="cache.t4g.micro", NumCacheClusters=2, CacheSubnetGroupName="stylesphere-cache",
        AutomaticFailoverEnabled=True, MultiAZEnabled=True, Tags=ctx.tags("cache"))
    results = {r.name: r for r in stack.up(only=ONLY)}
    assert not results["cache"].ok
    assert "encrypted in transit and at rest" in results["cache"].detail


def test_without_state_and_their_step_tags_the_named_resources_are_adopted_and_retagged(built):
    arn = built.last_ctx.resources["cache-auth-token"].id
    group_arn = _replication_groups()[0]["ARN"]
    _secrets().untag_resource(SecretId=arn, TagKeys=[TAG_STEP])
    _elasticache().remove_tags_from_resource(ResourceName=group_arn, TagKeys=[TAG_STEP])
    built.state_file.remove()
    results = _ok(built.up(only=ONLY))
    assert built.last_ctx.resources["cache-auth-token"].id == arn
    assert results["cache-auth-token"].outcome == results["cache"].outcome == "updated"
    assert _tags(_secrets().describe_secret(SecretId=arn)["Tags"])[TAG_STEP] == "cache-auth-token"
    assert _tags(_elasticache().list_tags_for_resource(ResourceName=group_arn)["TagList"])[TAG_STEP] == "cache"
    assert len(_secrets().list_secrets()["SecretList"]) == 1 and len(_replication_groups()) == 1
