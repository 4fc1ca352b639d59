"""The stack's KMS key (--audit) on moto with the strict fixture: made with rotation, its alias
and its policy; applied twice, deleted twice (the second finds a key pending deletion: gone);
`up` after `down` makes a new key; the inventory does not count a key pending deletion; the
services of the stack encrypt with it; and the refusals AWS makes that moto does not."""

from __future__ import annotations

import json

import pytest
from botocore.exceptions import ClientError

from provisioner.account.inventory import scan
from provisioner.engine.context import RunContext
from provisioner.shape.config import StackConfig

from stacks import ACCOUNT, REGION, ZONES, make_session, outcomes

KEY = ["kms-key"]


def audit_config(**more):
    return StackConfig(zones=list(ZONES), audit=True, **more)


def kms(stack):
    return make_session(stack.strict).client("kms")


def key_id(stack):
    return stack.state_file.read().resources["kms-key"]["id"]


def test_key_with_rotation_alias_policy_and_tags(make_stack):
    stack = make_stack(config=audit_config())
    assert outcomes(stack.up(only=KEY)) == {"kms-key": "created"}
    client, kid = kms(stack), key_id(stack)
    meta = client.describe_key(KeyId=kid)["KeyMetadata"]
    assert (meta["KeyManager"], meta["KeySpec"], meta["KeyUsage"], meta["KeyState"]) == (
        "CUSTOMER", "SYMMETRIC_DEFAULT", "ENCRYPT_DECRYPT", "Enabled")
    assert client.get_key_rotation_status(KeyId=kid)["KeyRotationEnabled"] is True
    assert [a["AliasName"] for a in client.list_aliases(KeyId=kid)["Aliases"]] == ["alias/provision/stylesphere"]
    tags = {t["TagKey"]: t["TagValue"] for t in client.list_resource_tags(KeyId=kid)["Tags"]}
    assert tags["provision:stack"] == "stylesphere" and tags["provision:step"] == "kms-key"

    policy = json.loads(client.get_key_policy(KeyId=kid, PolicyName="default")["Policy"])
    statements = {s["Sid"]: s for s in policy["Statement"]}
    assert statements["AccountAdministers"]["Principal"] == {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}
    logs = statements["CloudWatchLogsEncryptsStackLogs"]
    assert logs["Principal"] == {"Service": f"logs.{REGION}.amazonaws.com"}
    assert logs["Condition"]["ArnLike"]["kms:EncryptionContext:aws:logs:arn"] == [
        f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:aws-waf-logs-stylesphere",
        f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/provision/stylesphere/*"]
    role = (f"arn:aws:iam::{ACCOUNT}:role/aws-service-role/autoscaling.amazonaws.com/"
            "AWSServiceRoleForAutoScaling")
    assert statements["AutoScalingUsesKeyForVolumes"]["Principal"] == {"AWS": role}
    grants = statements["AutoScalingGrantsForVolumes"]
    assert grants["Action"] == "kms:CreateGrant"
    assert grants["Condition"] == {"Bool": {"kms:GrantIsForAWSResource": True}}
    assert statements["CloudTrailEncryptsLogs"]["Principal"] == {"Service": "cloudtrail.amazonaws.com"}
    # The key policy may only name the Auto Scaling role once it exists: the step made it.
    iam = make_session(stack.strict).client("iam")
    assert iam.get_role(RoleName="AWSServiceRoleForAutoScaling")["Role"]["Arn"] == role
    assert stack.state_file.read().resources["kms-key"]["attrs"]["arn"] == meta["Arn"]


def test_apply_twice_then_delete_twice_and_up_again_makes_a_new_key(make_stack, strict):
    stack = make_stack(config=audit_config())
    stack.up(only=KEY)
    first = key_id(stack)
    second = stack.up(only=KEY)
    assert outcomes(second) == {"kms-key": "kept"}, [(r.name, r.outcome, r.detail) for r in second]
    assert stack.mutating_calls() == []

    [down] = stack.down(only=KEY)
    assert down.outcome == "deleted" and "scheduled in 7 days" in down.detail
    client = kms(stack)
    meta = client.describe_key(KeyId=first)["KeyMetadata"]
    assert meta["KeyState"] == "PendingDeletion"
    assert client.list_aliases(KeyId=first)["Aliases"] == []
    assert [r for r in strict.refusals if r[2] == "order"] == []

    # A key pending deletion is not the stack's any more: nothing to delete, nothing called.
    assert outcomes(stack.down(only=KEY)) == {"kms-key": "absent"}
    assert stack.mutating_calls() == []

    assert outcomes(stack.up(only=KEY)) == {"kms-key": "created"}
    again = key_id(stack)
    assert again != first
    assert [a["TargetKeyId"] for a in client.list_aliases()["Aliases"]
            if a["AliasName"] == "alias/provision/stylesphere"] == [again]
    assert client.describe_key(KeyId=first)["KeyMetadata"]["KeyState"] == "PendingDeletion"


def test_delete_of_a_key_already_pending_deletion_is_done(make_stack):
    """A `down` that stopped after ScheduleKeyDeletion and before saving state: the next one
    meets KMSInvalidStateException, which for a key pending deletion means done."""
    stack = make_stack(config=audit_config())
    stack.up(only=KEY)
    ctx = stack.context()
    from steps.security.kms_key import KmsKey

    step = KmsKey()
    resource = step.find(ctx, key_id(stack))
    step.delete(ctx, resource)
    assert "scheduled" in step.delete(ctx, resource)


def test_drift_is_put_back(make_stack):
    stack = make_stack(config=audit_config())
    stack.up(only=KEY)
    client, kid = kms(stack), key_id(stack)
    client.disable_key_rotation(KeyId=kid)
    client.put_key_policy(KeyId=kid, PolicyName="default", Policy=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Sid": "AccountAdministers", "Effect": "Allow", "Action": "kms:*",
                                                "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}, "Resource": "*"}]}))
    client.delete_alias(AliasName="alias/provision/stylesphere")
    [result] = stack.up(only=KEY)
    assert result.outcome == "updated", result.detail
    assert client.get_key_rotation_status(KeyId=kid)["KeyRotationEnabled"] is True
    assert len(json.loads(client.get_key_policy(KeyId=kid, PolicyName="default")["Policy"])["Statement"]) == 5
    assert [a["AliasName"] for a in client.list_aliases(KeyId=kid)["Aliases"]] == ["alias/provision/stylesphere"]


def test_found_by_alias_then_by_tags_without_state(make_stack, tmp_path, strict):
    from stacks import Stack

    stack = make_stack(config=audit_config())
    stack.up(only=KEY)
    kid = key_id(stack)
    fresh = Stack("stylesphere", tmp_path / "other-state", strict, config=audit_config())
    assert fresh.engine(only=KEY).status()[0].resource_id == kid
    # A run that stopped before its alias: found by the tags, and the alias is made.
    kms(stack).delete_alias(AliasName="alias/provision/stylesphere")
    [result] = fresh.up(only=KEY)
    assert (result.outcome, result.resource_id) == ("updated", kid)


def test_inventory_counts_the_customer_key_until_its_deletion_is_scheduled(make_stack):
    stack = make_stack(config=audit_config())
    stack.up(only=KEY)
    client = kms(stack)
    # AWS's own keys and someone else's untagged key are never the tool's.
    client.create_key(Description="not the tool's")
    ctx = RunContext(stack="whoever", region=REGION, config=StackConfig(), session_factory=stack.session)
    ctx.account = ACCOUNT
    keys = [f for f in scan(ctx) if f.kind == "kms_key"]
    assert [(f.stack, f.id) for f in keys] == [("stylesphere", key_id(stack))]
    stack.down(only=KEY)
    assert [f for f in scan(ctx) if f.kind == "kms_key"] == []


def test_price_is_a_dollar_a_month_per_key():
    from provisioner.engine.kinds import PriceKey
    from steps.security.kms_key import KMS_KEY_MONTH, KmsKey

    assert isinstance(KMS_KEY_MONTH, PriceKey) and KMS_KEY_MONTH.default == 1.0
    rows, notes = KmsKey.listing.price(None, {"kms_key_month": 1.0}, REGION)
    assert rows == [("KMS key", 1, "key", 1.0 / 730)] and notes == []


def test_strict_rules_refuse_what_aws_refuses(make_stack, strict):
    stack = make_stack(config=audit_config())
    client = kms(stack)
    # A key policy naming a role that does not exist yet.
    missing = f"arn:aws:iam::{ACCOUNT}:role/nobody"
    with pytest.raises(ClientError) as e:
        client.create_key(Policy=json.dumps({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": missing}, "Action": "kms:*", "Resource": "*"}]}))
    assert e.value.response["Error"]["Code"] == "MalformedPolicyDocumentException"

    kid = client.create_key()["KeyMetadata"]["KeyId"]
    with pytest.raises(ClientError) as e:
        client.schedule_key_deletion(KeyId=kid, PendingWindowInDays=3)
    assert e.value.response["Error"]["Code"] == "ValidationException"
    client.schedule_key_deletion(KeyId=kid, PendingWindowInDays=7)
    for call in (lambda: client.schedule_key_deletion(KeyId=kid, PendingWindowInDays=7),
                 lambda: client.enable_key_rotation(KeyId=kid),
                 lambda: client.create_alias(AliasName="alias/x", TargetKeyId=kid)):
        with pytest.raises(ClientError) as e:
            call()
        assert e.value.response["Error"]["Code"] == "KMSInvalidStateException"
    logs = make_session(strict).client("logs")
    with pytest.raises(ClientError) as e:
        logs.create_log_group(logGroupName="x", kmsKeyId=client.describe_key(KeyId=kid)["KeyMetadata"]["Arn"])
    assert e.value.response["Error"]["Code"] == "InvalidParameterException"


ALL_USERS = ["database", "cache", "shared-files", "products-table", "waf-log-group", "auto-scaling-group"]


def test_the_stack_encrypts_with_its_key(make_stack, strict):
    config = audit_config(database="postgres", cache="redis", shared_files=True, catalog="dynamodb", waf=True)
    stack = make_stack(config=config)
    results = stack.up(only=ALL_USERS)
    assert all(r.ok for r in results), [(r.name, r.outcome, r.detail) for r in results if not r.ok]
    session = make_session(strict)
    state = stack.state_file.read().resources
    arn = state["kms-key"]["attrs"]["arn"]

    database = session.client("rds").describe_db_instances(DBInstanceIdentifier=state["database"]["id"])["DBInstances"][0]
    assert database["StorageEncrypted"] is True and database["KmsKeyId"] == arn
    assert database["MasterUserSecret"]["KmsKeyId"] == arn
    group = session.client("elasticache").describe_replication_groups(
        ReplicationGroupId=state["cache"]["id"])["ReplicationGroups"][0]
    assert group["AtRestEncryptionEnabled"] is True and group["KmsKeyId"] == arn
    secret = session.client("secretsmanager").describe_secret(SecretId=state["cache-auth-token"]["id"])
    assert secret["KmsKeyId"] == arn
    files = session.client("efs").describe_file_systems(FileSystemId=state["shared-files"]["id"])["FileSystems"][0]
    assert files["Encrypted"] is True and files["KmsKeyId"] == arn
    table = session.client("dynamodb").describe_table(TableName=state["products-table"]["id"])["Table"]
    assert table["SSEDescription"]["SSEType"] == "KMS" and table["SSEDescription"]["KMSMasterKeyArn"] == arn
    [log_group] = session.client("logs").describe_log_groups(logGroupNamePrefix="aws-waf-logs-stylesphere")["logGroups"]
    assert log_group["kmsKeyId"] == arn
    template = session.client("ec2").describe_launch_template_versions(
        LaunchTemplateId=state["launch-template"]["id"], Versions=["$Latest"])["LaunchTemplateVersions"][0]
    [root] = template["LaunchTemplateData"]["BlockDeviceMappings"]
    assert root["Ebs"]["Encrypted"] is True and root["Ebs"]["KmsKeyId"] == arn

    # Applied again: nothing to change, the key included.
    again = stack.up(only=ALL_USERS)
    assert {r.outcome for r in again} == {"kept"}, [(r.name, r.outcome, r.detail) for r in again if r.outcome != "kept"]

    # `down` deletes the users before it schedules the key's deletion (KMS would refuse nothing,
    # but a database whose key is going would become unreadable while it still runs).
    from provisioner.engine.registry import build_steps, dependency_graph

    teardown = dependency_graph(build_steps(config.superset()), reverse=True)
    assert {"database", "cache", "cache-auth-token", "shared-files", "products-table", "launch-template",
            "waf-log-group"} <= teardown["kms-key"]
    down = stack.down()
    assert all(r.ok for r in down), [(r.name, r.outcome, r.detail) for r in down if not r.ok]
    assert session.client("kms").describe_key(KeyId=arn)["KeyMetadata"]["KeyState"] == "PendingDeletion"
    assert [r for r in strict.refusals if r[2] == "order"] == []


def test_turning_audit_on_or_off_is_refused_where_aws_fixes_the_key():
    built = StackConfig(zones=list(ZONES), database="postgres", shared_files=True)
    assert built.encryption_changes(dataclasses_replace(built, audit=True)) == [
        "the RDS database", "the EFS file system"]
    assert StackConfig(audit=True).encryption_changes(StackConfig()) == []     # compute only: converged
    assert built.encryption_changes(built) == []


def dataclasses_replace(config, **changes):
    import dataclasses

    return dataclasses.replace(config, **changes)
