"""The audit tier (--audit) on moto with the strict fixture: the audit bucket and its policy for
CloudTrail, the trail (logging, validated, every region), the flow log with its group and role
(refused while the role propagates), GuardDuty's detector adopted or created, the full-stack
buckets' lifecycles, and the emptying of versioned buckets."""

from __future__ import annotations

import json

import pytest
from botocore.exceptions import ClientError

from provisioner.shape.config import StackConfig

from stacks import ACCOUNT, REGION, ZONES, make_session, outcomes

AUDIT = ["audit-bucket", "trail", "flow-log-group", "flow-log-role", "flow-log", "guardduty-detector",
         "product-images-bucket", "user-uploads-bucket", "backups-bucket"]
AUDIT_BUCKET = f"stylesphere-audit-{ACCOUNT}-{REGION}"
TRAIL_ARN = f"arn:aws:cloudtrail:{REGION}:{ACCOUNT}:trail/stylesphere-trail"


def audit_config(**more):
    return StackConfig(zones=list(ZONES), audit=True, **more)


def client(stack, service):
    return make_session(stack.strict).client(service)


def test_apply_twice_then_delete_twice(make_stack, strict):
    stack = make_stack(config=audit_config())
    results = stack.up(only=AUDIT)
    first = outcomes(results)
    assert all(first[name] == "created" for name in AUDIT), "; ".join(f"{r.name}={r.outcome}:{r.detail}" for r in results)
    # The delivery role was refused while it propagated, and the create waited it out.
    assert strict.flow_log_role_refusals >= 1

    second = stack.up(only=AUDIT)
    assert set(outcomes(second)[n] for n in AUDIT) == {"kept"}, [(r.name, r.outcome, r.detail) for r in second]
    assert stack.mutating_calls() == []

    s3 = client(stack, "s3")
    s3.put_object(Bucket=AUDIT_BUCKET, Key="AWSLogs/x.json.gz", Body=b"1")
    down = stack.down(only=AUDIT)
    assert all(r.ok for r in down), [(r.name, r.outcome, r.detail) for r in down]
    assert all(outcomes(down)[name] == "deleted" for name in AUDIT), outcomes(down)
    assert [r for r in strict.refusals if r[2] == "order"] == []
    assert client(stack, "cloudtrail").list_trails()["Trails"] == []
    assert client(stack, "guardduty").list_detectors()["DetectorIds"] == []
    assert client(stack, "ec2").describe_flow_logs()["FlowLogs"] == []
    assert not [b for b in s3.list_buckets()["Buckets"] if b["Name"].startswith("stylesphere-")]

    again = stack.down(only=AUDIT)
    assert set(outcomes(again)[n] for n in AUDIT) == {"absent"}
    assert stack.mutating_calls() == []


def test_bucket_policy_lifecycle_and_trail_as_aws_holds_them(make_stack):
    stack = make_stack(config=audit_config())
    stack.up(only=AUDIT)
    s3 = client(stack, "s3")
    policy = json.loads(s3.get_bucket_policy(Bucket=AUDIT_BUCKET)["Policy"])
    by_sid = {s["Sid"]: s for s in policy["Statement"]}
    assert by_sid["CloudTrailAclCheck"]["Action"] == "s3:GetBucketAcl"
    write = by_sid["CloudTrailWrite"]
    assert write["Condition"]["StringEquals"] == {"s3:x-amz-acl": "bucket-owner-full-control",
                                                  "aws:SourceArn": TRAIL_ARN}
    assert write["Resource"].endswith(f"/AWSLogs/{ACCOUNT}/*")
    assert by_sid["DenyInsecureTransport"]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert all(s3.get_public_access_block(Bucket=AUDIT_BUCKET)["PublicAccessBlockConfiguration"].values())
    assert s3.get_bucket_versioning(Bucket=AUDIT_BUCKET)["Status"] == "Enabled"
    [rule] = s3.get_bucket_lifecycle_configuration(Bucket=AUDIT_BUCKET)["Rules"]
    assert rule["Transitions"] == [{"Days": 90, "StorageClass": "GLACIER"}]
    assert rule["Expiration"]["Days"] == 365
    assert rule["NoncurrentVersionExpiration"]["NoncurrentDays"] == 365

    ct = client(stack, "cloudtrail")
    trail = ct.get_trail(Name="stylesphere-trail")["Trail"]
    assert (trail["S3BucketName"], trail["IsMultiRegionTrail"], trail["LogFileValidationEnabled"]) == (
        AUDIT_BUCKET, True, True)
    # Its log files are encrypted with the stack's key (SSE-KMS).
    assert trail["KmsKeyId"] == stack.state_file.read().resources["kms-key"]["attrs"]["arn"]
    assert ct.get_trail_status(Name="stylesphere-trail")["IsLogging"] is True
    tags = {t["Key"]: t["Value"] for t in ct.list_tags(ResourceIdList=[TRAIL_ARN])["ResourceTagList"][0]["TagsList"]}
    assert tags["provision:step"] == "trail"

    # Drift is put back: logging stopped by hand.
    ct.stop_logging(Name="stylesphere-trail")
    assert "start logging (it was stopped)" in {c for r in stack.up(only=AUDIT) for c in r.changes}
    assert ct.get_trail_status(Name="stylesphere-trail")["IsLogging"] is True

    lifecycles = {p: s3.get_bucket_lifecycle_configuration(Bucket=f"stylesphere-{p}-{ACCOUNT}-{REGION}")["Rules"][0]
                  for p in ("images", "uploads", "backups")}
    assert lifecycles["images"]["Transitions"][0]["StorageClass"] == "INTELLIGENT_TIERING"
    assert lifecycles["uploads"]["Transitions"] == [{"Days": 90, "StorageClass": "STANDARD_IA"}]
    assert lifecycles["backups"]["Transitions"] == [{"Days": 90, "StorageClass": "GLACIER"}]
    assert lifecycles["backups"]["Expiration"]["Days"] == 365
    assert s3.get_bucket_versioning(Bucket=f"stylesphere-images-{ACCOUNT}-{REGION}")["Status"] == "Enabled"


def test_the_private_buckets_encrypt_with_the_stacks_key_and_a_bucket_key(make_stack):
    stack = make_stack(config=audit_config())
    stack.up(only=AUDIT)
    key_arn = stack.state_file.read().resources["kms-key"]["attrs"]["arn"]
    s3 = client(stack, "s3")
    buckets = [AUDIT_BUCKET] + [f"stylesphere-{p}-{ACCOUNT}-{REGION}" for p in ("images", "uploads", "backups")]

    def rule(bucket):
        [only] = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
        return only

    for bucket in buckets:
        assert rule(bucket) == {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms",
                                                                        "KMSMasterKeyID": key_arn},
                                "BucketKeyEnabled": True}, bucket
    # Someone puts a bucket back on SSE-S3: `up` says so and encrypts with the key again.
    s3.put_bucket_encryption(Bucket=AUDIT_BUCKET, ServerSideEncryptionConfiguration={"Rules": [
        {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]})
    changes = {r.name: r.changes for r in stack.up(only=AUDIT)}
    assert changes["audit-bucket"] == ["set default encryption SSE-KMS with the stack's key and a bucket key"]
    assert rule(AUDIT_BUCKET)["ApplyServerSideEncryptionByDefault"]["KMSMasterKeyID"] == key_arn
    assert {outcomes(stack.up(only=AUDIT))[name] for name in AUDIT} == {"kept"}


def test_the_trail_waits_for_the_bucket_policy(make_stack, strict):
    """The strict rule refuses CreateTrail before the policy exists, as AWS does."""
    stack = make_stack(config=audit_config())
    stack.up(only=["audit-bucket"])
    s3 = client(stack, "s3")
    s3.delete_bucket_policy(Bucket=AUDIT_BUCKET)
    with pytest.raises(ClientError) as refused:
        client(stack, "cloudtrail").create_trail(Name="stylesphere-trail", S3BucketName=AUDIT_BUCKET)
    assert refused.value.response["Error"]["Code"] == "InsufficientS3BucketPolicyException"
    # `up` puts the policy back before the trail is made.
    results = outcomes(stack.up(only=["trail"]))
    assert results["audit-bucket"] == "updated" and results["trail"] == "created"


def test_flow_log_on_the_vpc_and_its_role(make_stack):
    stack = make_stack(config=audit_config())
    stack.up(only=["flow-log"])
    state = stack.state_file.read().resources
    [flow] = client(stack, "ec2").describe_flow_logs()["FlowLogs"]
    assert (flow["ResourceId"], flow["TrafficType"], flow["LogGroupName"]) == (
        state["vpc"]["id"], "ALL", "/provision/stylesphere/flow-logs")
    assert flow["DeliverLogsPermissionArn"] == state["flow-log-role"]["attrs"]["arn"]
    iam = client(stack, "iam")
    role = iam.get_role(RoleName=state["flow-log-role"]["id"])["Role"]
    [statement] = role["AssumeRolePolicyDocument"]["Statement"]
    assert statement["Principal"] == {"Service": "vpc-flow-logs.amazonaws.com"}
    assert statement["Condition"] == {"StringEquals": {"aws:SourceAccount": ACCOUNT}}
    inline = iam.get_role_policy(RoleName=role["RoleName"], PolicyName="deliver-flow-logs")["PolicyDocument"]
    [grant] = inline["Statement"]
    assert sorted(grant["Action"]) == ["logs:CreateLogStream", "logs:DescribeLogStreams", "logs:PutLogEvents"]
    assert all(":log-group:/provision/stylesphere/flow-logs" in r for r in grant["Resource"])
    [group] = client(stack, "logs").describe_log_groups(logGroupNamePrefix="/provision/stylesphere/flow-logs")["logGroups"]
    assert group["retentionInDays"] == 30
    # Encrypted with the stack's key, which lets CloudWatch Logs use it for the stack's groups.
    assert group["kmsKeyId"] == state["kms-key"]["attrs"]["arn"]


def test_the_accounts_detector_is_used_and_left(make_stack):
    stack = make_stack(config=audit_config())
    gd = client(stack, "guardduty")
    existing = gd.create_detector(Enable=True)["DetectorId"]
    plan = {r.name: r for r in stack.plan(only=["guardduty-detector"])}
    assert plan["guardduty-detector"].outcome == "no change"
    assert plan["guardduty-detector"].detail == f"uses the account's detector {existing}"
    up = outcomes(stack.up(only=["guardduty-detector"]))
    assert up["guardduty-detector"] == "kept"
    assert stack.state_file.read().resources["guardduty-detector"]["attrs"]["created"] is False
    down = outcomes(stack.down(only=["guardduty-detector"]))
    assert down["guardduty-detector"] == "absent"
    assert gd.list_detectors()["DetectorIds"] == [existing]


def test_a_detector_the_stack_created_is_deleted(make_stack):
    stack = make_stack(config=audit_config())
    assert outcomes(stack.plan(only=["guardduty-detector"]))["guardduty-detector"] == "create"
    stack.up(only=["guardduty-detector"])
    gd = client(stack, "guardduty")
    [mine] = gd.list_detectors()["DetectorIds"]
    assert gd.get_detector(DetectorId=mine)["Tags"]["provision:stack"] == "stylesphere"
    assert stack.state_file.read().resources["guardduty-detector"]["attrs"]["created"] is True
    assert outcomes(stack.down(only=["guardduty-detector"]))["guardduty-detector"] == "deleted"
    assert gd.list_detectors()["DetectorIds"] == []


def test_versioned_buckets_are_emptied_of_every_version_and_delete_marker(make_stack):
    stack = make_stack(config=audit_config())
    stack.up(only=["backups-bucket"])
    s3 = client(stack, "s3")
    bucket = f"stylesphere-backups-{ACCOUNT}-{REGION}"
    for n in range(3):
        s3.put_object(Bucket=bucket, Key="db.dump", Body=f"v{n}".encode())
        s3.put_object(Bucket=bucket, Key=f"other-{n}", Body=b"x")
        s3.delete_object(Bucket=bucket, Key=f"other-{n}")   # a delete marker over a version
    listed = s3.list_object_versions(Bucket=bucket)
    assert len(listed["Versions"]) == 6 and len(listed["DeleteMarkers"]) == 3
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 1
    assert outcomes(stack.down(only=["backups-bucket"]))["backups-bucket"] == "deleted"
    assert bucket not in {b["Name"] for b in s3.list_buckets()["Buckets"]}
