"""The shared file system on moto with the strict fixture: an encrypted EFS file system
(elastic throughput, a lifecycle to Infrequent Access), a mount target in each app subnet behind
the files group, the access point as the backend's user; each waited for through `creating`; a
second `up` that changes nothing; drift converged; `down` in the order AWS requires (twice),
waiting out the mount targets' interfaces; found again without state; the scan, its price and
`cleanup`."""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.exceptions import ClientError

from provisioner.account.inventory import scan
from provisioner.account.pricing import estimate, load_packaged
from provisioner.engine.context import TAG_STACK, TAG_STEP, RunContext
from provisioner.shape.config import StackConfig

from stacks import ACCOUNT, REGION, ZONES, make_session
from test_cli import cli, state_dir  # noqa: F401  (fixtures)
from test_fleet import hooks  # noqa: F401  (fixtures)

FILES_STEPS = ("shared-files", "shared-files-mount-1", "shared-files-mount-2", "shared-files-access-point")
ONLY = ("shared-files-mount-1", "shared-files-mount-2", "shared-files-access-point")


def files_config(**more) -> StackConfig:
    return StackConfig(zones=list(ZONES), shared_files=True, **more)


def _tags(pairs):
    return {t["Key"]: t["Value"] for t in pairs or []}


def _ok(results):
    assert all(r.ok for r in results), [(r.name, r.outcome, r.detail) for r in results if not r.ok]
    return {r.name: r for r in results}


def _order_refusals(strict):
    return [r for r in strict.refusals if r[2] == "order"]


def _efs():
    return boto3.client("efs", region_name=REGION)


def _file_systems():
    return _efs().describe_file_systems()["FileSystems"]


@pytest.fixture
def built(make_stack, strict):
    stack = make_stack(config=files_config())
    results = _ok(stack.up(only=ONLY))
    assert {results[n].outcome for n in FILES_STEPS} == {"created"}
    assert _order_refusals(strict) == []
    return stack


# -- up ----------------------------------------------------------------------------------------------

def test_up_makes_an_encrypted_file_system_mounted_in_each_app_subnet(built):
    resources = built.last_ctx.resources
    (fs,) = _file_systems()
    assert fs["FileSystemId"] == resources["shared-files"].id
    assert fs["Encrypted"] is True
    assert (fs["PerformanceMode"], fs["ThroughputMode"]) == ("generalPurpose", "elastic")
    assert fs["LifeCycleState"] == "available" and fs["NumberOfMountTargets"] == 2
    tags = _tags(fs["Tags"])
    assert tags["Name"] == "stylesphere-shared-files" and tags[TAG_STEP] == "shared-files"
    assert tags[TAG_STACK] == "stylesphere"
    # Idempotent by a creation token of the stack's generation.
    assert fs["CreationToken"] == built.last_ctx.client_token("shared-files")
    policies = _efs().describe_lifecycle_configuration(FileSystemId=fs["FileSystemId"])["LifecyclePolicies"]
    assert {"TransitionToIA": "AFTER_30_DAYS"} in policies

    targets = _efs().describe_mount_targets(FileSystemId=fs["FileSystemId"])["MountTargets"]
    by_subnet = {t["SubnetId"]: t for t in targets}
    group = resources["files-security-group"].id
    for n in (1, 2):
        target = by_subnet[resources[f"private-subnet-{n}"].id]
        assert target["MountTargetId"] == resources[f"shared-files-mount-{n}"].id
        assert _efs().describe_mount_target_security_groups(
            MountTargetId=target["MountTargetId"])["SecurityGroups"] == [group]

    (point,) = _efs().describe_access_points(FileSystemId=fs["FileSystemId"])["AccessPoints"]
    assert point["AccessPointId"] == resources["shared-files-access-point"].id
    assert point["PosixUser"] == {"Uid": 10001, "Gid": 10001}
    assert point["RootDirectory"] == {"Path": "/stylesphere", "CreationInfo": {
        "OwnerUid": 10001, "OwnerGid": 10001, "Permissions": "0750"}}
    assert _tags(point["Tags"])[TAG_STEP] == "shared-files-access-point"

    outputs = built.engine().state.outputs
    assert outputs["shared_files_id"] == fs["FileSystemId"]
    assert outputs["shared_files_access_point_id"] == point["AccessPointId"]
    assert "TagResource" not in [op for _, op in built.last_ctx.calls]


def test_a_second_up_changes_nothing(built):
    results = _ok(built.up(only=ONLY))
    assert {results[n].outcome for n in FILES_STEPS} == {"kept"}
    assert built.mutating_calls() == []


def test_drift_is_converged(built):
    resources = built.last_ctx.resources
    fs_id = resources["shared-files"].id
    _efs().untag_resource(ResourceId=fs_id, TagKeys=[TAG_STEP])
    _efs().put_lifecycle_configuration(FileSystemId=fs_id, LifecyclePolicies=[])
    # A mount target moved to another group by hand.
    default_group = boto3.client("ec2", region_name=REGION).describe_security_groups(
        Filters=[{"Name": "vpc-id", "Values": [resources["vpc"].id]}, {"Name": "group-name", "Values": ["default"]}]
    )["SecurityGroups"][0]["GroupId"]
    target = resources["shared-files-mount-1"].id
    _efs().modify_mount_target_security_groups(MountTargetId=target, SecurityGroups=[default_group])
    results = _ok(built.up(only=ONLY))
    assert results["shared-files"].outcome == "updated"
    assert results["shared-files-mount-1"].outcome == "updated"
    assert _tags(_file_systems()[0]["Tags"])[TAG_STEP] == "shared-files"
    assert {"TransitionToIA": "AFTER_30_DAYS"} in _efs().describe_lifecycle_configuration(
        FileSystemId=fs_id)["LifecyclePolicies"]
    assert _efs().describe_mount_target_security_groups(MountTargetId=target)["SecurityGroups"] == [
        resources["files-security-group"].id]
    assert {r.outcome for r in _ok(built.up(only=ONLY)).values()} == {"kept"}


# -- down --------------------------------------------------------------------------------------------

def test_down_deletes_the_mount_targets_first_and_waits_out_their_interfaces(built, strict):
    results = _ok(built.down(only=ONLY))
    assert {results[n].outcome for n in FILES_STEPS} == {"deleted"}
    assert _order_refusals(strict) == []
    assert _file_systems() == [] and _efs().describe_access_points()["AccessPoints"] == []
    calls = [op for _, op in built.last_ctx.calls]
    assert max(i for i, op in enumerate(calls) if op == "DeleteMountTarget") < calls.index("DeleteFileSystem")
    # The subnets and the files group waited for the interfaces of the deleted mount targets.
    assert ("DeleteSubnet", "DependencyViolation", "lingering") in strict.refusals or \
        ("DeleteSecurityGroup", "DependencyViolation", "lingering") in strict.refusals
    again = _ok(built.down(only=ONLY))
    assert {again[n].outcome for n in FILES_STEPS} == {"absent"}


def test_found_by_the_file_system_and_tags_without_state(built, strict):
    ids = {n: built.last_ctx.resources[n].id for n in FILES_STEPS}
    built.state_file.remove()
    status = {r.name: r for r in built.status(only=ONLY)}
    assert {n: status[n].resource_id for n in FILES_STEPS} == ids
    _ok(built.down(only=ONLY))
    assert _file_systems() == [] and _order_refusals(strict) == []


# -- what the strict fixture refuses ------------------------------------------------------------------

def test_strict_rules_refuse_what_aws_refuses(built, strict):
    import dataclasses

    # Long enough that a slow machine cannot outlast the lingering interfaces within the test.
    strict.delays = dataclasses.replace(strict.delays, mount_target_release=30, efs_create=30)
    session = make_session(strict)
    resources = built.last_ctx.resources
    efs = session.client("efs")
    fs_id = resources["shared-files"].id
    with pytest.raises(ClientError) as raised:
        efs.delete_file_system(FileSystemId=fs_id)
    assert raised.value.response["Error"]["Code"] == "FileSystemInUse"
    for n in (1, 2):
        efs.delete_mount_target(MountTargetId=resources[f"shared-files-mount-{n}"].id)
    # Gone, but their interfaces linger: counted by the file system, holding the subnet.
    assert efs.describe_file_systems(FileSystemId=fs_id)["FileSystems"][0]["NumberOfMountTargets"] == 2
    with pytest.raises(ClientError) as raised:
        efs.delete_file_system(FileSystemId=fs_id)
    assert raised.value.response["Error"]["Code"] == "FileSystemInUse"
    with pytest.raises(ClientError) as raised:
        session.client("ec2").delete_subnet(SubnetId=resources["private-subnet-1"].id)
    assert raised.value.response["Error"]["Code"] == "DependencyViolation"
    # A new file system is creating: no mount target or access point on it yet.
    new = efs.create_file_system(CreationToken="other", Encrypted=True)
    assert new["LifeCycleState"] == "creating"
    with pytest.raises(ClientError) as raised:
        efs.create_access_point(FileSystemId=new["FileSystemId"], ClientToken="x")
    assert raised.value.response["Error"]["Code"] == "IncorrectFileSystemLifeCycleState"
    strict.refusals.clear()  # made on purpose here


# -- the scan, its price, cleanup and the instance role -----------------------------------------------

def test_scan_finds_the_file_system_and_access_point_and_prices_storage_by_use(built):
    ctx = RunContext(stack="whoever", region=REGION, config=StackConfig(), session_factory=lambda: make_session())
    ctx.account = ACCOUNT
    found = {f.kind: f for f in scan(ctx) if f.stack == "stylesphere" and f.kind.startswith("efs_")}
    assert set(found) == {"efs_file_system", "efs_access_point"}
    assert found["efs_file_system"].id == built.last_ctx.resources["shared-files"].id
    assert found["efs_file_system"].created is not None
    book = load_packaged()
    # Empty: nothing stored, nothing billed by the hour (storage is billed by use).
    assert estimate(list(found.values()), REGION, book).hourly == 0
    from types import SimpleNamespace

    from steps.data.shared_files import efs_storage_charges

    rows, _ = efs_storage_charges(SimpleNamespace(detail={"state": "available", "size_gb": 10}),
                                  book.region(REGION), REGION)
    assert rows == [("EFS storage ($0.3/GB-month)", 10, "GB", pytest.approx(0.30 / 730))]


def test_cleanup_sees_and_deletes_the_file_system_without_state(hooks, state_dir):  # noqa: F811
    from pathlib import Path

    built = cli("up", "--stack", "lab", "--no-wait", "--shared-files", state_dir=state_dir)
    assert built.exit_code == 0, built.output
    (Path(state_dir) / "lab.json").unlink()
    listed = json.loads(cli("list", "--json", state_dir=state_dir).stdout)
    assert [s["stack"] for s in listed["stacks"]] == ["lab"]
    cleaned = cli("cleanup", "--stack", "lab", "--yes", state_dir=state_dir)
    assert cleaned.exit_code == 0, cleaned.output
    assert "0 resources left" in cleaned.text
    assert _file_systems() == [] and _efs().describe_access_points()["AccessPoints"] == []


def test_the_instances_mount_the_file_system_at_boot_and_the_role_gains_nothing(make_stack):
    """NFSv4.1 with Ubuntu's own client (amazon-efs-utils is not packaged for Ubuntu): the mount
    uses no IAM, so the instance role gets no EFS permission; the security group is the gate."""
    import base64
    import gzip

    stack = make_stack("lab", config=files_config())
    results = _ok(stack.up())
    assert results["launch-template"].outcome == "created"
    resources = stack.last_ctx.resources
    ec2 = boto3.client("ec2", region_name=REGION)
    data = ec2.describe_launch_template_versions(LaunchTemplateName="lab-web", Versions=["$Latest"])[
        "LaunchTemplateVersions"][0]["LaunchTemplateData"]
    raw = base64.b64decode(data["UserData"])
    script = (gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw).decode()
    fs = resources["shared-files"].id
    assert f"\nSHARED_FILES={fs}\n" in script and "SHARED_FILES_DIR=/shared" in script
    assert "mount -t nfs4" in script
    iam = boto3.client("iam", region_name=REGION)
    document = iam.get_role_policy(RoleName=f"lab-{REGION}-web", PolicyName="read-app-releases")["PolicyDocument"]
    assert "elasticfilesystem" not in str(document)
