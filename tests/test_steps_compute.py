"""The compute tier on moto with the strict fixture: the launch template and the Auto Scaling
Group checked by value, a second `up` that changes nothing, a changed instance type rolled out by
an instance refresh, a new instance profile refused and retried, and a teardown that waits for
the instances to terminate."""

from __future__ import annotations

import base64
import dataclasses

import boto3
import pytest
from botocore.exceptions import ClientError

import userdata
from provisioner.shape.config import DEFAULT_PULL_GRACE_PERIOD
from provisioner.engine.context import TAG_STACK, TAG_STEP, is_mutating
from stacks import REGION, make_session, outcomes, tagged_leftovers

ONLY = ["auto-scaling-group"]
COMPUTE = ("launch-template", "auto-scaling-group")
UBUNTU_AMD64 = "/aws/service/canonical/ubuntu/server/24.04/stable/current/amd64/hvm/ebs-gp3/ami-id"
# What the two compute steps may call to change AWS; a no-op `up` makes none of them.
COMPUTE_MUTATIONS = {"CreateLaunchTemplate", "CreateLaunchTemplateVersion", "ModifyLaunchTemplate",
                     "DeleteLaunchTemplate", "StartInstanceRefresh", "RunInstances", "TerminateInstances"}


def _by_name(results):
    return {r.name: r for r in results}


def _ok(results):
    assert all(r.ok for r in results), [(r.name, r.outcome, r.detail) for r in results if not r.ok]
    return _by_name(results)


def _compute_mutations(stack):
    return [c for c in stack.last_ctx.calls if is_mutating(c[1])
            and (c[0] == "autoscaling" or c[1] in COMPUTE_MUTATIONS)]


def _latest_data(template_id):
    ec2 = boto3.client("ec2", region_name=REGION)
    return ec2.describe_launch_template_versions(LaunchTemplateId=template_id,
                                                 Versions=["$Latest"])["LaunchTemplateVersions"][0]


def _group(name="stylesphere-web"):
    groups = boto3.client("autoscaling", region_name=REGION).describe_auto_scaling_groups(
        AutoScalingGroupNames=[name])["AutoScalingGroups"]
    return groups[0] if groups else None


def _tags(pairs):
    return {t["Key"]: t["Value"] for t in pairs}


@pytest.fixture
def built(make_stack):
    stack = make_stack()
    results = _ok(stack.up(only=ONLY))
    assert {results[n].outcome for n in COMPUTE} == {"created"}
    return stack


def test_launch_template_by_value(built):
    resources = built.last_ctx.resources
    template = resources["launch-template"]
    version = _latest_data(template.id)
    data = version["LaunchTemplateData"]

    # IMDSv2 only, with a hop limit no container can reach (the Docker bridge is a second hop).
    assert data["MetadataOptions"] == {"HttpTokens": "required", "HttpPutResponseHopLimit": 1,
                                       "HttpEndpoint": "enabled"}
    # One root volume: Ubuntu's root device, gp3, 20 GiB, encrypted, gone with the instance.
    assert data["BlockDeviceMappings"] == [{"DeviceName": "/dev/sda1", "Ebs": {
        "VolumeType": "gp3", "VolumeSize": 20, "Encrypted": True, "DeleteOnTermination": True}}]
    # No public address: groups only, no network interface that could ask for one.
    assert "NetworkInterfaces" not in data
    assert data["SecurityGroupIds"] == [resources["web-security-group"].id]
    assert data["IamInstanceProfile"] == {"Arn": resources["instance-profile"].attrs["arn"]}
    assert data["InstanceType"] == "t3.micro"

    # The latest Ubuntu 24.04 LTS for the instance type's architecture (t3: x86_64, amd64).
    ami = boto3.client("ssm", region_name=REGION).get_parameter(Name=UBUNTU_AMD64)["Parameter"]["Value"]
    assert data["ImageId"] == ami == template.attrs["ami"]
    image = boto3.client("ec2", region_name=REGION).describe_images(ImageIds=[ami])["Images"][0]
    assert image["OwnerId"] == "099720109477" and "ubuntu-noble-24.04-amd64" in image["Name"]

    # Instances and their volumes are tagged by the template.
    specs = {s["ResourceType"]: _tags(s["Tags"]) for s in data["TagSpecifications"]}
    for kind in ("instance", "volume"):
        assert specs[kind][TAG_STACK] == "stylesphere" and specs[kind][TAG_STEP] == "instance", kind
        assert specs[kind]["Name"] == "stylesphere-instance"

    # The boot script, rendered with this stack's release.
    release = resources["app-release"].attrs
    expected = userdata.render_bootstrap(
        region=REGION, release_bucket=release["bucket"], release_key=release["key"],
        images_base_url=resources["assets-bucket"].attrs["images_base_url"], stack="stylesphere",
        grace_period_seconds=360, image_repository=resources["image-build"].attrs["repository_uri"],
        image_tag=resources["image-build"].id)
    assert base64.b64decode(data["UserData"]) == userdata.encode_user_data(expected)
    assert release["bucket"] in expected and release["key"] in expected

    assert template.attrs["name"] == "stylesphere-web" and template.attrs["version"] == 1
    assert len(template.attrs["user_data_sha256"]) == 64
    assert built.state_file.load_for("123456789012", REGION).outputs["launch_template_id"] == template.id


def test_auto_scaling_group_by_value(built):
    resources = built.last_ctx.resources
    group = _group()
    assert sorted(group["VPCZoneIdentifier"].split(",")) == sorted(
        resources[f"private-subnet-{i}"].id for i in (1, 2))
    assert sorted(group["TargetGroupARNs"]) == sorted(
        resources[f"{role}-target-group"].id for role in ("frontend", "backend"))
    assert group["HealthCheckType"] == "ELB" and group["HealthCheckGracePeriod"] == DEFAULT_PULL_GRACE_PERIOD
    assert (group["MinSize"], group["DesiredCapacity"], group["MaxSize"]) == (1, 2, 4)
    assert group["LaunchTemplate"]["LaunchTemplateId"] == resources["launch-template"].id
    # Pinned to the version number, so that each instance's version is a number AWS reports.
    assert group["LaunchTemplate"]["Version"] == str(resources["launch-template"].attrs["version"]) == "1"
    assert group["NewInstancesProtectedFromScaleIn"] is False
    propagated = {t["Key"]: t["PropagateAtLaunch"] for t in group["Tags"]}
    assert propagated == {"Name": False, TAG_STACK: True, TAG_STEP: False, "provision:created-at": False}
    assert _tags(group["Tags"])[TAG_STEP] == "auto-scaling-group"

    # Not waited for in the step (the CLI does, with a display), but launched.
    assert len(group["Instances"]) == 2
    ec2 = boto3.client("ec2", region_name=REGION)
    ids = [i["InstanceId"] for i in group["Instances"]]
    for reservation in ec2.describe_instances(InstanceIds=ids)["Reservations"]:
        for instance in reservation["Instances"]:
            tags = _tags(instance["Tags"])
            assert tags[TAG_STACK] == "stylesphere" and tags[TAG_STEP] == "instance"
            assert not instance.get("PublicIpAddress")
            assert [g["GroupId"] for g in instance["SecurityGroups"]] == [resources["web-security-group"].id]
            root = next(m for m in instance["BlockDeviceMappings"] if m["DeviceName"] == "/dev/sda1")
            volume = ec2.describe_volumes(VolumeIds=[root["Ebs"]["VolumeId"]])["Volumes"][0]
            assert (volume["VolumeType"], volume["Size"], volume["Encrypted"]) == ("gp3", 20, True)
            assert _tags(volume["Tags"])[TAG_STEP] == "instance"

    status = _by_name(built.status(only=ONLY))["auto-scaling-group"]
    assert status.detail == "2/2 instances InService (desired 2, min 1, max 4)"
    assert built.state_file.load_for("123456789012", REGION).outputs["asg_name"] == "stylesphere-web"


def test_second_up_changes_nothing_and_does_not_re_resolve_the_ami(built, monkeypatch):
    from steps.compute.launch_template import LaunchTemplate

    def newer_ubuntu(*_):  # a new Canonical release must not churn the fleet
        raise AssertionError("the AMI was looked up again")

    monkeypatch.setattr(LaunchTemplate, "_latest_ubuntu", staticmethod(newer_ubuntu))
    results = _ok(built.up(only=ONLY))
    assert {results[n].outcome for n in COMPUTE} == {"kept"}, [(n, results[n].detail) for n in COMPUTE]
    assert _compute_mutations(built) == []
    assert built.plan(only=ONLY) and {r.outcome for r in built.plan(only=ONLY) if r.name in COMPUTE} == {"no change"}


def test_changed_instance_type_makes_a_new_version_and_refreshes_the_instances(built):
    resources = built.last_ctx.resources
    template_id = resources["launch-template"].id
    old_ami = resources["launch-template"].attrs["ami"]
    old_instances = {i["InstanceId"] for i in _group()["Instances"]}
    bigger = dataclasses.replace(built.config, instance_type="t3.small")

    planned = _by_name(built.engine(config=bigger, only=ONLY).plan())
    assert planned["launch-template"].changes == [
        "instance type t3.micro -> t3.small", "then the Auto Scaling Group replaces its instances (instance refresh)"]
    assert planned["launch-template"].outcome == "update"
    assert _compute_mutations(built) == []

    results = _ok(built.up(config=bigger, only=ONLY))
    assert results["launch-template"].outcome == "updated"
    assert results["launch-template"].changes == ["instance type t3.micro -> t3.small"]
    assert results["auto-scaling-group"].changes == [
        f"launch template {template_id} version 1 -> {template_id} version 2",
        "instance refresh started to version 2: " + ", ".join(f"{i} on version 1" for i in sorted(old_instances))]

    version = _latest_data(template_id)
    assert version["VersionNumber"] == 2 and version["DefaultVersion"] is True
    assert version["LaunchTemplateData"]["InstanceType"] == "t3.small"
    assert version["LaunchTemplateData"]["ImageId"] == old_ami  # same architecture: same image
    assert version["LaunchTemplateData"]["MetadataOptions"]["HttpTokens"] == "required"

    refreshes = boto3.client("autoscaling", region_name=REGION).describe_instance_refreshes(
        AutoScalingGroupName="stylesphere-web")["InstanceRefreshes"]
    assert [r["Status"] for r in refreshes] == ["Successful"]
    assert refreshes[0]["Preferences"]["MinHealthyPercentage"] == 50
    assert refreshes[0]["Preferences"]["InstanceWarmup"] == DEFAULT_PULL_GRACE_PERIOD
    group = _group()
    assert {i["LaunchTemplate"]["Version"] for i in group["Instances"]} == {"2"}
    assert {i["InstanceType"] for i in group["Instances"]} == {"t3.small"}
    assert not old_instances & {i["InstanceId"] for i in group["Instances"]}

    third = _ok(built.up(only=ONLY))  # the state remembers t3.small
    assert {third[n].outcome for n in COMPUTE} == {"kept"}, [(n, third[n].detail) for n in COMPUTE]
    assert _compute_mutations(built) == []


def as_aws_reports_versions(parsed, **_):
    """AWS reports each instance's launch template version as the group names it: "$Latest" for
    a group on "$Latest" (moto reports the number whatever the group names)."""
    for group in parsed.get("AutoScalingGroups", []):
        named = (group.get("LaunchTemplate") or {}).get("Version")
        if named and not named.isdigit():
            for instance in group.get("Instances", []):
                if instance.get("LaunchTemplate"):
                    instance["LaunchTemplate"]["Version"] = named


def test_which_version_each_instance_runs_is_decided_from_numbers_aws_reports(make_stack):
    stack = make_stack(hooks=[("after-call.auto-scaling.DescribeAutoScalingGroups", as_aws_reports_versions)])
    _ok(stack.up(only=ONLY))
    instances = sorted(i["InstanceId"] for i in _group()["Instances"])
    bigger = dataclasses.replace(stack.config, instance_type="t3.small")
    template_id = stack.last_ctx.resources["launch-template"].id
    results = _ok(stack.up(config=bigger, only=ONLY))
    assert results["auto-scaling-group"].changes[-1] == (
        "instance refresh started to version 2: " + ", ".join(f"{i} on version 1" for i in instances))
    assert _group()["LaunchTemplate"] == {"LaunchTemplateId": template_id, "LaunchTemplateName": "stylesphere-web",
                                          "Version": "2"}


def test_plan_names_the_version_each_outdated_instance_runs(built):
    """What `plan` says once the template has a newer version than some instances run (a refresh
    stopped half-way, a version `up` made before an interruption)."""
    from steps.compute.auto_scaling_group import AutoScalingGroup

    ctx = built.last_ctx
    ctx.read_only = True
    group = ctx.resources["auto-scaling-group"]
    instances = sorted(i["InstanceId"] for i in group.raw["Instances"])
    ctx.resources["launch-template"].attrs["version"] = 2
    assert AutoScalingGroup()._refresh(ctx, group, apply=False) == [
        "start an instance refresh to version 2: " + ", ".join(f"{i} on version 1" for i in instances)]


def test_changed_ami_makes_a_new_version(built):
    current = _latest_ami()
    images = boto3.client("ec2", region_name=REGION).describe_images(
        Filters=[{"Name": "architecture", "Values": ["x86_64"]}])["Images"]
    other = next(i["ImageId"] for i in images if i["ImageId"] != current)
    pinned = dataclasses.replace(built.config, ami=other)
    results = _ok(built.up(config=pinned, only=ONLY))
    assert [c for c in results["launch-template"].changes if c.startswith("AMI ")] == [
        f"AMI {current} -> {other}"]
    assert results["auto-scaling-group"].changes[0].endswith("version 1 -> " + results["launch-template"].resources[0].id
                                                              + " version 2")
    assert results["auto-scaling-group"].changes[1].startswith("instance refresh started to version 2: i-")
    assert results["launch-template"].resources[0].attrs["ami"] == other


def _latest_ami():
    return boto3.client("ssm", region_name=REGION).get_parameter(Name=UBUNTU_AMD64)["Parameter"]["Value"]


def test_a_new_instance_profile_is_refused_then_retried(make_stack, strict):
    strict.hold_profile_new()
    stack = make_stack()
    results = _ok(stack.up(only=ONLY))
    assert results["auto-scaling-group"].outcome == "created"
    assert ("CreateAutoScalingGroup", "ValidationError", "lingering") in strict.refusals
    assert [r for r in strict.refusals if r[2] == "order"] == []
    assert _group() is not None


def test_teardown_waits_for_instances_then_down_twice(built, strict):
    strict.delays.instance_terminate = 0.4
    instances = [i["InstanceId"] for i in _group()["Instances"]]
    results = _ok(built.down(only=ONLY))
    assert results["auto-scaling-group"].outcome == "deleted"
    assert results["auto-scaling-group"].seconds >= 0.4
    calls = built.last_ctx.calls
    # Polled, not slept through: the instances read shutting-down, the group "Delete in progress".
    assert calls.count(("ec2", "DescribeInstances")) >= 3
    assert calls.count(("autoscaling", "DescribeAutoScalingGroups")) >= 3
    # Nothing deleted before what uses it; the subnets and the web group waited for the instances.
    assert [r for r in strict.refusals if r[2] == "order"] == []
    states = {i["State"]["Name"] for r in boto3.client("ec2", region_name=REGION).describe_instances(
        InstanceIds=instances)["Reservations"] for i in r["Instances"]}
    assert states == {"terminated"}
    assert _group() is None
    assert tagged_leftovers("stylesphere") == []

    again = built.down(only=ONLY)
    assert set(outcomes(again).values()) == {"absent"}
    assert built.mutating_calls() == []


def test_a_group_being_deleted_is_not_adopted(built, strict):
    strict.delays.instance_terminate = 5
    client = make_session(strict).client("autoscaling")
    client.delete_auto_scaling_group(AutoScalingGroupName="stylesphere-web", ForceDelete=True)
    results = _by_name(built.up(only=ONLY))
    assert results["auto-scaling-group"].outcome == "failed"
    assert "being deleted" in results["auto-scaling-group"].detail


def test_strict_rules_refuse_what_aws_refuses(built, strict):
    """The fixture itself: a live instance holds its subnet and security group, and a group with
    instances cannot be deleted without ForceDelete."""
    resources = built.last_ctx.resources
    session = make_session(strict)
    ec2, autoscaling = session.client("ec2"), session.client("autoscaling")
    subnet = _group()["VPCZoneIdentifier"].split(",")[0]
    with pytest.raises(ClientError, match="DependencyViolation"):
        ec2.delete_subnet(SubnetId=subnet)
    with pytest.raises(ClientError, match="DependencyViolation"):
        ec2.delete_security_group(GroupId=resources["web-security-group"].id)
    with pytest.raises(ClientError, match="ResourceInUse"):
        autoscaling.delete_auto_scaling_group(AutoScalingGroupName="stylesphere-web")
    assert [r[:2] for r in strict.refusals] == [("DeleteSubnet", "DependencyViolation"),
                                               ("DeleteSecurityGroup", "DependencyViolation"),
                                               ("DeleteAutoScalingGroup", "ResourceInUse")]
    strict.refusals.clear()  # made on purpose here
