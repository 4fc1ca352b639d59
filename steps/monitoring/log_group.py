"""A CloudWatch Logs group the stack names and keeps (a retention, its tags at creation): the base
of the app's log group and CodeBuild's. Registers nothing itself.

CreateLogGroup takes the tags (CloudWatch Logs has no TagSpecifications: the `tags` map is it),
never the retention: PutRetentionPolicy follows at once, and `update` puts it back if it drifted.
"""

from provisioner.account.pricing import HOURS_PER_MONTH, price_of
from provisioner.engine.context import Resource
from provisioner.engine.kinds import Iam, ItemTags, Listing, PriceKey, UsageNote, actions
from provisioner.engine.registry import NamedStep, created
from provisioner.engine.retries import error_code

BYTES_PER_GB = 1024 ** 3


def _storage(products, region, instance_types):
    return price_of(products("AmazonCloudWatch", regionCode=region, productFamily="Storage Snapshot"),
                    "TimedStorage-ByteHrs")


LOGS_STORAGE_GB_MONTH = PriceKey("logs_storage_gb_month", "CloudWatch Logs storage", "GB-month", _storage,
                                 # us-east-1's figure until `provision prices --refresh` has one.
                                 default=0.03)


def log_storage_charges(item, prices, region):
    """What the group stores (DescribeLogGroups says its size); ingestion ($0.50/GB) bills by use."""
    size = (getattr(item, "detail", None) or {}).get("size_gb")
    if not isinstance(size, (int, float)) or size <= 0:
        return [], []
    rate = prices["logs_storage_gb_month"]
    return [(f"CloudWatch Logs storage (${rate:g}/GB-month)", size, "GB", rate / HOURS_PER_MONTH)], []


def logs_ingestion(products, region):
    """Ingestion is billed per GB the drivers send, by use ($0.50/GB in us-east-1)."""
    rate = price_of(products("AmazonCloudWatch", regionCode=region, productFamily="Data Payload"), "DataProcessing-Bytes")
    return None if rate is None else f"${rate:g} per GB ingested (CloudWatch Logs, standard class)"


LOGS_INGESTION = UsageNote("CloudWatch Logs ingestion", logs_ingestion)


def log_group_listing(kind: str, prefix: str, label: str, candidate=None) -> Listing:
    """The inventory's view of the stack's groups under `prefix`: by their tags (one call per
    group; `candidate` keeps those calls to the names this tool makes), priced by stored size."""
    return Listing(kind, "logs", "describe_log_groups", "logGroups", "logGroupName", label=label,
                   params={"logGroupNamePrefix": prefix},
                   tags=ItemTags("list_tags_log_group", "logGroupName", "tags", as_map=True),
                   candidate=candidate,
                   detail=lambda i: {"size_gb": (i.get("storedBytes") or 0) / BYTES_PER_GB},
                   price=log_storage_charges, price_keys=(LOGS_STORAGE_GB_MONTH,), usage_notes=(LOGS_INGESTION,))


def log_group_iam(arn: str) -> Iam:
    """`arn`: the group's ARN pattern (DescribeLogGroups takes no resource-level permission)."""
    return Iam(create=(actions("logs:CreateLogGroup", "logs:TagResource", "logs:TagLogGroup",
                               "logs:PutRetentionPolicy", on=arn),),
               read=(actions("logs:DescribeLogGroups"),
                     actions("logs:ListTagsLogGroup", "logs:ListTagsForResource", on=arn)),
               change=(actions("logs:TagResource", "logs:TagLogGroup", "logs:PutRetentionPolicy", "logs:AssociateKmsKey",
                               "logs:DisassociateKmsKey", on=arn),),
               delete=(actions("logs:DeleteLogGroup", on=arn),))


class LogGroupStep(NamedStep):
    """A log group of the stack's: `resource_name(ctx)` and `retention(ctx)` say which and how long.
    Each kind declares its gone codes (ResourceNotFoundException: the group)."""

    what = "CloudWatch Logs group"
    aws_type = "AWS::Logs::LogGroup"

    def __init__(self, name, depends_on=(), *, audit: bool = False):
        # --audit: the group is encrypted with the stack's key, which only needs to exist (its ARN).
        # Only groups the key policy names (steps/security/kms_key.py log_group_patterns) may.
        super().__init__(name, depends_on=tuple(depends_on) + ((created("kms-key"),) if audit else ()))

    def retention(self, ctx) -> int:
        raise NotImplementedError

    # -- find --------------------------------------------------------------------------------
    def read(self, ctx, name):
        logs = ctx.client("logs")
        # A prefix: the exact name is picked out of what starts with it.
        groups = [g for g in logs.describe_log_groups(logGroupNamePrefix=name).get("logGroups", [])
                  if g["logGroupName"] == name]
        if not groups:
            return None, []
        return groups[0], _pairs(logs.list_tags_log_group(logGroupName=name).get("tags", {}))

    def to_resource(self, item, tags):
        arn = item.get("arn", "")
        # DescribeLogGroups gives the ARN with ":*" (the group's streams); policies and
        # destinations name the group without it.
        arn = arn[:-2] if arn.endswith(":*") else arn
        return Resource(id=item["logGroupName"], attrs={"name": item["logGroupName"], "arn": arn},
                        raw={**item, "Tags": tags})

    def arn(self, ctx) -> str:
        from steps.storage.s3_bucket import partition

        return f"arn:{partition(ctx.region)}:logs:{ctx.region}:{ctx.account or '*'}:log-group:{self.resource_name(ctx)}"

    # -- create ------------------------------------------------------------------------------
    def create(self, ctx):
        from botocore.exceptions import ClientError

        logs, name, days = ctx.client("logs"), self.resource_name(ctx), self.retention(ctx)
        key = self._key(ctx)
        try:
            logs.create_log_group(logGroupName=name, tags={t["Key"]: t["Value"] for t in ctx.tags(self.name)},
                                  **({"kmsKeyId": key} if key else {}))
        except ClientError as e:
            if error_code(e) != "ResourceAlreadyExistsException":
                raise
            raise self.taken(ctx) from None
        logs.put_retention_policy(logGroupName=name, retentionInDays=days)
        return Resource(id=name, attrs={"name": name, "arn": self.arn(ctx)},
                        raw={"logGroupName": name, "retentionInDays": days, "Tags": ctx.tags(self.name),
                             **({"kmsKeyId": key} if key else {})})

    # -- converge ----------------------------------------------------------------------------
    def update(self, ctx, resource, apply):
        logs, days = ctx.client("logs"), self.retention(ctx)
        changes = ctx.converge_tags(resource.raw.get("Tags", []), self.name, apply, lambda missing: logs.tag_log_group(
            logGroupName=resource.id, tags={t["Key"]: t["Value"] for t in missing}))
        changes += self._converge_key(ctx, resource, apply)
        have = resource.raw.get("retentionInDays")
        if have != days:
            if apply:
                logs.put_retention_policy(logGroupName=resource.id, retentionInDays=days)
            changes.append(f"keep logs {days} days (was {have or 'forever'})")
        return changes

    def _key(self, ctx):
        if not any(getattr(d, "name", d) == "kms-key" for d in self.depends_on):
            return None
        from steps.security.kms_key import stack_key_arn

        return stack_key_arn(ctx)

    def _converge_key(self, ctx, resource, apply):
        """A log group's key changes in place (new events only; those written before keep theirs)."""
        logs = ctx.client("logs")
        want, have = self._key(ctx), resource.raw.get("kmsKeyId")
        if not want and have and not ctx.config.audit:
            if apply:
                logs.disassociate_kms_key(logGroupName=resource.id)
            return ["no longer encrypted with the stack's KMS key (--no-audit)"]
        if want and have != want:
            if apply:
                logs.associate_kms_key(logGroupName=resource.id, kmsKeyId=want)
            return ["encrypt new events with the stack's KMS key"]
        return []

    # -- delete ------------------------------------------------------------------------------
    def delete(self, ctx, resource):
        # Its streams and events go with it.
        ctx.client("logs").delete_log_group(logGroupName=resource.id)

    def describe(self, resource):
        days = resource.raw.get("retentionInDays")
        return f"{resource.id}, kept {days} days" if days else f"{resource.id}, kept forever"


def _pairs(tags: dict) -> list[dict]:
    return [{"Key": k, "Value": v} for k, v in tags.items()]
