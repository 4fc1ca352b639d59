"""The data tier's database (RDS) and catalog (DynamoDB) on moto with the strict fixture: built
whole with the rest of the stack, applied twice (the second changes nothing), found again by
tags, torn down in the order AWS requires (the subnet group, the security group and the data
subnets refuse while the database is still `deleting`), and seen by `list` and `cleanup`."""

from __future__ import annotations

import base64
import dataclasses
import gzip
import json
import threading
import time

import boto3
import pytest

from provisioner.engine.context import is_mutating
from provisioner.engine.errors import ConfigError
from provisioner.shape.config import StackConfig
from steps.data.dynamodb_table import APP_ACTIONS, TABLES

from stacks import ACCOUNT, REGION, ZONES, outcomes, tagged_leftovers
from strict_base import ORDER

DATA = dict(zones=list(ZONES), database="postgres", catalog="dynamodb")
DATA_STEPS = {"data-subnet-1", "data-subnet-2", "data-route-table", "data-subnet-1-association",
              "data-subnet-2-association", "database-security-group", "database-subnet-group", "database",
              "products-table", "users-table", "orders-table", "cart-table"}


def rds():
    return boto3.client("rds", region_name=REGION)


def dynamodb():
    return boto3.client("dynamodb", region_name=REGION)


def user_data(stack_name="stylesphere") -> str:
    ec2 = boto3.client("ec2", region_name=REGION)
    template = ec2.describe_launch_template_versions(LaunchTemplateName=f"{stack_name}-web",
                                                     Versions=["$Latest"])["LaunchTemplateVersions"][0]
    raw = base64.b64decode(template["LaunchTemplateData"]["UserData"])
    return (gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw).decode()


def template_data(stack_name="stylesphere") -> dict:
    ec2 = boto3.client("ec2", region_name=REGION)
    return ec2.describe_launch_template_versions(LaunchTemplateName=f"{stack_name}-web",
                                                 Versions=["$Latest"])["LaunchTemplateVersions"][0]["LaunchTemplateData"]


def role_policy(stack_name="stylesphere") -> dict:
    iam = boto3.client("iam", region_name=REGION)
    name = f"{stack_name}-{REGION}-web"
    document = iam.get_role_policy(RoleName=name, PolicyName="read-app-releases")["PolicyDocument"]
    return json.loads(document) if isinstance(document, str) else document


@pytest.fixture
def data_stack(make_stack):
    return make_stack(config=StackConfig(**DATA))


def test_the_data_tier_is_built_with_the_stack_and_used_by_the_instances(data_stack, strict):
    results = outcomes(data_stack.up())
    assert {name: results[name] for name in DATA_STEPS} == {name: "created" for name in DATA_STEPS}

    (db,) = rds().describe_db_instances(DBInstanceIdentifier="stylesphere-database")["DBInstances"]
    assert db["Engine"] == "postgres" and db["DBInstanceClass"] == "db.t4g.micro" and not db["MultiAZ"]
    assert db["StorageEncrypted"] and db["StorageType"] == "gp3" and db["AllocatedStorage"] == 20
    assert db["BackupRetentionPeriod"] == 7 and not db["PubliclyAccessible"] and not db["DeletionProtection"]
    secret_arn = db["MasterUserSecret"]["SecretArn"]
    group = rds().describe_db_subnet_groups(DBSubnetGroupName="stylesphere-database")["DBSubnetGroups"][0]
    state = data_stack.state_file.load_for(ACCOUNT, REGION)
    data_subnets = {state.resources[f"data-subnet-{i}"]["id"] for i in (1, 2)}
    assert {s["SubnetIdentifier"] for s in group["Subnets"]} == data_subnets
    assert db["DBSubnetGroup"]["DBSubnetGroupName"] == "stylesphere-database"

    # The data subnets have no way out: their table has the VPC's local route only.
    ec2 = boto3.client("ec2", region_name=REGION)
    (table,) = ec2.describe_route_tables(RouteTableIds=[state.resources["data-route-table"]["id"]])["RouteTables"]
    assert [r for r in table["Routes"] if r.get("DestinationCidrBlock") == "0.0.0.0/0"] == []
    assert {a["SubnetId"] for a in table["Associations"] if not a.get("Main")} == data_subnets
    # The database's group opens 5432 to the app instances' group alone.
    (sg,) = ec2.describe_security_groups(GroupIds=[state.resources["database-security-group"]["id"]])["SecurityGroups"]
    web = state.resources["web-security-group"]["id"]
    assert [(p["FromPort"], [g["GroupId"] for g in p["UserIdGroupPairs"]], p.get("IpRanges")) for p in
            sg["IpPermissions"]] == [(5432, [web], [])]

    # The tables, on demand, encrypted, recoverable.
    for name, (key, indexes) in TABLES.items():
        described = dynamodb().describe_table(TableName=f"stylesphere-{name}")["Table"]
        assert [(k["AttributeName"], k["KeyType"]) for k in described["KeySchema"]] == key
        assert {i["IndexName"] for i in described.get("GlobalSecondaryIndexes", [])} == set(indexes)
        assert described["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
        assert described["SSEDescription"]["Status"] == "ENABLED"
        backups = dynamodb().describe_continuous_backups(TableName=f"stylesphere-{name}")
        assert backups["ContinuousBackupsDescription"]["PointInTimeRecoveryDescription"][
            "PointInTimeRecoveryStatus"] == "ENABLED"

    # The instances: the backend's settings, never a password; the role may read that one secret.
    script = user_data()
    assert f"DATABASE_SECRET_ARN={secret_arn}" in script and "DATABASE_ENGINE=postgres" in script
    assert "DATABASE_INSTANCE_ID=stylesphere-database" in script and "CATALOG=dynamodb" in script
    assert "DYNAMODB_TABLE_PREFIX=stylesphere-" in script
    secrets = boto3.client("secretsmanager", region_name=REGION)
    password = json.loads(secrets.get_secret_value(SecretId=secret_arn)["SecretString"])["password"]
    assert password not in script and password not in data_stack.state_file.path.read_text()
    assert template_data()["MetadataOptions"]["HttpPutResponseHopLimit"] == 2
    statements = {s["Sid"]: s for s in role_policy()["Statement"]}
    assert statements["ReadDatabasePassword"] == {"Sid": "ReadDatabasePassword", "Effect": "Allow",
                                                  "Action": "secretsmanager:GetSecretValue", "Resource": secret_arn}
    assert statements["FindDatabase"]["Resource"] == db["DBInstanceArn"]
    products = statements["UseProductsTable"]
    assert products["Action"] == list(APP_ACTIONS["products"])
    assert products["Resource"].endswith(":table/stylesphere-products")
    # Nothing on the users table, which the app does not use yet, nor on any index.
    assert "UseUsersTable" not in statements and not [s for s in statements.values() if "index" in str(s)]
    assert not [r for r in strict.refusals if r[2] == ORDER]

    # Applied again: nothing changes.
    again = outcomes(data_stack.up())
    assert set(again.values()) == {"kept"}, again
    assert [op for _, op in data_stack.last_ctx.calls if is_mutating(op)] == []


def test_nothing_waits_for_the_database_that_does_not_need_it(make_stack, strict, monkeypatch):
    """The database takes minutes; the instances need only its identifier and secret, so the
    Auto Scaling Group is made while it is still creating, and `up` ends once it is available."""
    strict.delays = dataclasses.replace(strict.delays, db_create=1.5)
    stack = make_stack(config=StackConfig(**DATA))
    seen = {}
    stack.hooks.append(("before-call.autoscaling.CreateAutoScalingGroup",
                        lambda **_: seen.setdefault("group", time.monotonic()) and None))
    results = outcomes(stack.up())
    assert results["database"] == "created" and results["auto-scaling-group"] == "created"
    created_at = strict.db_created["stylesphere-database"][0]
    assert seen["group"] < created_at + 1.5, "the group waited for the database"
    assert time.monotonic() >= created_at + 1.5  # and `up` waited for it to be available
    (db,) = rds().describe_db_instances(DBInstanceIdentifier="stylesphere-database")["DBInstances"]
    assert db["DBInstanceStatus"] == "available"
    assert stack.state_file.load_for(ACCOUNT, REGION).resources["database"]["attrs"]["address"]


def test_down_waits_for_the_database_before_its_subnet_group_group_and_subnets(data_stack, strict):
    data_stack.up()
    results = outcomes(data_stack.down())
    assert {name: results[name] for name in DATA_STEPS} == {name: "deleted" for name in DATA_STEPS}
    assert not [r for r in strict.refusals if r[2] == ORDER], strict.refusals
    assert rds().describe_db_instances()["DBInstances"] == []
    assert dynamodb().list_tables()["TableNames"] == []
    assert tagged_leftovers("stylesphere") == []
    # No final snapshot unless asked, and its automated backups gone with it.
    assert rds().describe_db_snapshots()["DBSnapshots"] == []


def test_down_deletes_the_log_groups_rds_made_for_the_exports_and_no_others(data_stack):
    data_stack.up()
    logs = boto3.client("logs", region_name=REGION)
    # What RDS makes on AWS for the exports (moto does not): untagged, never expiring.
    ours = "/aws/rds/instance/stylesphere-database/postgresql"
    others = ["/aws/rds/instance/stylesphere-database2/postgresql", "/aws/rds/instance/other-database/postgresql"]
    for name in [ours, *others]:
        logs.create_log_group(logGroupName=name)
    assert outcomes(data_stack.down())["database"] == "deleted"
    left = [g["logGroupName"] for g in logs.describe_log_groups(logGroupNamePrefix="/aws/rds/")["logGroups"]]
    assert sorted(left) == sorted(others)


def test_a_final_snapshot_is_named_and_said_to_bill(make_stack, strict):
    stack = make_stack(config=StackConfig(**DATA, final_snapshot=True))
    stack.up()
    warnings = []
    engine = stack.engine()
    engine.ctx.reporter.warn = warnings.append
    outcomes(engine.down())
    (snapshot,) = rds().describe_db_snapshots()["DBSnapshots"]
    assert snapshot["DBSnapshotIdentifier"].startswith("stylesphere-database-final-")
    assert any(snapshot["DBSnapshotIdentifier"] in w and "bills" in w for w in warnings), warnings
    # Kept on purpose, so not the stack's: `list` and `cleanup` leave it alone.
    tags = rds().list_tags_for_resource(ResourceName=snapshot["DBSnapshotArn"])["TagList"]
    assert not [t for t in tags if t["Key"].startswith("provision:")]


def test_deletion_protection_stops_down_with_what_to_do(make_stack):
    stack = make_stack(config=StackConfig(**DATA, db_deletion_protection=True))
    stack.up()
    results = {r.name: r for r in stack.down()}
    assert results["database"].outcome == "failed"
    assert "deletion protection" in results["database"].detail
    # What needs the database gone is kept; the rest goes.
    assert results["database-subnet-group"].outcome != "deleted"
    assert results["auto-scaling-group"].outcome == "deleted"
    assert rds().describe_db_instances()["DBInstances"][0]["DeletionProtection"]


def test_a_lost_state_finds_the_data_tier_by_its_tags(data_stack):
    data_stack.up()
    data_stack.state_file.path.unlink()
    again = outcomes(data_stack.up())
    assert {again[name] for name in DATA_STEPS} == {"kept"}


def test_a_changed_class_and_multi_az_converge_in_place(make_stack):
    stack = make_stack(config=StackConfig(**DATA))
    stack.up()
    bigger = StackConfig(**DATA, db_class="db.t4g.small", db_multi_az=True)
    results = {r.name: r for r in stack.up(config=bigger)}
    assert results["database"].outcome == "updated"
    assert "db.t4g.small" in results["database"].detail and "MultiAZ" in results["database"].detail
    (db,) = rds().describe_db_instances(DBInstanceIdentifier="stylesphere-database")["DBInstances"]
    assert db["DBInstanceClass"] == "db.t4g.small" and db["MultiAZ"]


def test_the_database_publishes_its_logs_and_a_turned_off_export_converges_back(make_stack):
    stack = make_stack(config=StackConfig(**DATA))
    stack.up()
    (db,) = rds().describe_db_instances(DBInstanceIdentifier="stylesphere-database")["DBInstances"]
    assert db["EnabledCloudwatchLogsExports"] == ["postgresql"]
    # Someone turns the export off in the console: RDS.9 fails until `up` puts it back.
    rds().modify_db_instance(DBInstanceIdentifier="stylesphere-database", ApplyImmediately=True,
                             CloudwatchLogsExportConfiguration={"DisableLogTypes": ["postgresql"]})
    (db,) = rds().describe_db_instances(DBInstanceIdentifier="stylesphere-database")["DBInstances"]
    assert not db.get("EnabledCloudwatchLogsExports")
    results = {r.name: r for r in stack.up()}
    assert results["database"].outcome == "updated"
    assert "postgresql log(s) to CloudWatch Logs" in results["database"].detail
    (db,) = rds().describe_db_instances(DBInstanceIdentifier="stylesphere-database")["DBInstances"]
    assert db["EnabledCloudwatchLogsExports"] == ["postgresql"]
    assert outcomes(stack.up())["database"] == "kept"


def test_another_engine_is_refused_as_a_replacement():
    old, new = StackConfig(**DATA), StackConfig(**{**DATA, "database": "mysql"})
    assert old.replacements(new) == ["--database postgres -> mysql"]
    assert StackConfig(**DATA).replacements(StackConfig(**{**DATA, "database": "none"})) == []


def test_options_without_a_database_are_refused():
    with pytest.raises(ConfigError, match="--db-multi-az without a database"):
        StackConfig(zones=list(ZONES), db_multi_az=True).validate()
    with pytest.raises(ConfigError, match="not an engine"):
        StackConfig(zones=list(ZONES), database="oracle").validate()
    with pytest.raises(ConfigError, match="data subnet 10.0.11.0/24 overlaps"):
        StackConfig(zones=list(ZONES), database="mysql", data_subnet_cidrs=["10.0.11.0/24", "10.0.33.0/24"]).validate()


def test_the_role_grants_exactly_the_calls_the_app_makes_on_the_tables():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "app" / "backend"))
    from stylesphere_api.stores.dynamodb import DYNAMODB_ACTIONS

    assert APP_ACTIONS == DYNAMODB_ACTIONS


def test_strict_holds_the_subnet_group_group_and_subnets_while_the_database_is_deleting(data_stack, strict):
    from botocore.exceptions import ClientError

    strict.delays = dataclasses.replace(strict.delays, db_delete=30)
    data_stack.up()
    strict.refusals.clear()  # what `up` met (a new instance profile, on a slow machine)
    state = data_stack.state_file.load_for(ACCOUNT, REGION)
    client = data_stack.session().client("rds", region_name=REGION)
    ec2 = data_stack.session().client("ec2", region_name=REGION)
    with pytest.raises(ClientError, match="InvalidDBSubnetGroupStateFault"):
        client.delete_db_subnet_group(DBSubnetGroupName="stylesphere-database")
    client.delete_db_instance(DBInstanceIdentifier="stylesphere-database", SkipFinalSnapshot=True)
    (item,) = client.describe_db_instances(DBInstanceIdentifier="stylesphere-database")["DBInstances"]
    assert item["DBInstanceStatus"] == "deleting"
    for call in (lambda: client.delete_db_subnet_group(DBSubnetGroupName="stylesphere-database"),
                 lambda: ec2.delete_security_group(GroupId=state.resources["database-security-group"]["id"]),
                 lambda: ec2.delete_subnet(SubnetId=state.resources["data-subnet-1"]["id"])):
        with pytest.raises(ClientError) as refused:
            call()
        assert refused.value.response["Error"]["Code"] in ("InvalidDBSubnetGroupStateFault", "DependencyViolation")
    assert [kind for _, _, kind in strict.refusals] == ["order", "lingering", "lingering", "lingering"]
