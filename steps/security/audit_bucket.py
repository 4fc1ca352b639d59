"""The audit bucket (--audit): where the stack's CloudTrail trail writes, private, versioned, kept a year."""

from provisioner.engine.kinds import Free
from provisioner.engine.registry import register

from steps.storage.s3_bucket import PrivateBucket, bucket_arn, partition, private_bucket_iam, private_bucket_listing

PURPOSE = "audit"
TRAIL = "trail"
# The full-stack architecture's retention: audit logs to Glacier after 90 days, gone after a year.
# Noncurrent versions (an overwritten or deleted log file: versioning keeps it) age the same way,
# or versioning would keep them, and bill for them, forever.
GLACIER_AFTER_DAYS = 90
EXPIRE_AFTER_DAYS = 365
LIFECYCLE = [{
    "ID": "audit-logs-to-glacier-then-expire", "Status": "Enabled", "Filter": {},
    "Transitions": [{"Days": GLACIER_AFTER_DAYS, "StorageClass": "GLACIER"}],
    "Expiration": {"Days": EXPIRE_AFTER_DAYS},
    "NoncurrentVersionTransitions": [{"NoncurrentDays": GLACIER_AFTER_DAYS, "StorageClass": "GLACIER"}],
    "NoncurrentVersionExpiration": {"NoncurrentDays": EXPIRE_AFTER_DAYS},
    "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 7},
}]
AUDIT_BUCKET_ARNS = ("arn:{partition}:s3:::{stack}-audit-*", "arn:{partition}:s3:::{stack}-audit-*/*")


def trail_name(ctx) -> str:
    return f"{ctx.stack}-trail"


def trail_arn(ctx) -> str:
    """Known before the trail exists: the bucket policy names it, and CreateTrail is refused
    until that policy is in place."""
    return f"arn:{partition(ctx.region)}:cloudtrail:{ctx.region}:{ctx.account}:trail/{trail_name(ctx)}"


def cloudtrail_statements(ctx, bucket: str) -> list[dict]:
    """AWS's documented bucket policy for CloudTrail: it reads the bucket's ACL, then writes under
    AWSLogs/<account>/ with the owner given full control. aws:SourceArn limits both to this
    stack's trail: without it any trail of any account could write here (the confused deputy)."""
    arn = bucket_arn(ctx, bucket)
    source = {"aws:SourceArn": trail_arn(ctx)}
    return [
        {"Sid": "CloudTrailAclCheck", "Effect": "Allow", "Principal": {"Service": "cloudtrail.amazonaws.com"},
         "Action": "s3:GetBucketAcl", "Resource": arn, "Condition": {"StringEquals": source}},
        {"Sid": "CloudTrailWrite", "Effect": "Allow", "Principal": {"Service": "cloudtrail.amazonaws.com"},
         "Action": "s3:PutObject", "Resource": f"{arn}/AWSLogs/{ctx.account}/*",
         "Condition": {"StringEquals": {"s3:x-amz-acl": "bucket-owner-full-control", **source}}},
    ]


AUDIT_BUCKETS = private_bucket_listing(
    "audit_bucket", "S3 buckets (audit logs)", (PURPOSE,),
    Free("storage bills by use: S3 Standard, then Glacier Flexible Retrieval after 90 days (usage-based notes)"))


@register
class AuditBucket(PrivateBucket):
    """The CloudTrail trail's log files: nothing public, TLS only, versioned, to Glacier after 90
    days and deleted after 365. `down` empties it (every version) after the trail is gone."""

    kind = "audit_bucket"
    gone_codes = frozenset({"NoSuchBucket"})
    listing = AUDIT_BUCKETS
    iam = private_bucket_iam(AUDIT_BUCKET_ARNS)
    purpose = PURPOSE
    lifecycle_summary = f"to Glacier after {GLACIER_AFTER_DAYS} days, deleted after {EXPIRE_AFTER_DAYS}"

    def __init__(self):
        super().__init__("audit-bucket")

    @classmethod
    def instances(cls, config):
        return [cls()] if config.audit else []

    def lifecycle_rules(self):
        return LIFECYCLE

    def policy_statements(self, ctx, bucket):
        return cloudtrail_statements(ctx, bucket)

    def outputs(self, resource):
        return {"audit_bucket": resource.id}
