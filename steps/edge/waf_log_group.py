"""The CloudWatch Logs group the web ACL logs to (--waf): `aws-waf-logs-<stack>`, kept 30 days."""

from provisioner.account.pricing import HOURS_PER_MONTH, price_of
from provisioner.engine.context import Resource
from provisioner.engine.errors import ConfigError
from provisioner.engine.kinds import Iam, ItemTags, Listing, PriceKey, actions
from provisioner.engine.registry import Step, register
from provisioner.engine.retries import error_code

# WAF delivers logs only to a log group whose name starts with this (and to nothing else in
# CloudWatch Logs): PutLoggingConfiguration refuses any other name (WAFInvalidParameterException).
WAF_LOG_PREFIX = "aws-waf-logs-"
RETENTION_DAYS = 30
LOG_GROUP_ARN = "arn:{partition}:logs:{region}:{account}:log-group:aws-waf-logs-{stack}*"
BYTES_PER_GB = 1024 ** 3


def log_group_name(ctx) -> str:
    return f"{WAF_LOG_PREFIX}{ctx.stack}"


def log_group_arn(ctx) -> str:
    """The ARN WAF takes as a destination: without the ":*" DescribeLogGroups appends."""
    from steps.storage.s3_bucket import partition

    return f"arn:{partition(ctx.region)}:logs:{ctx.region}:{ctx.account}:log-group:{log_group_name(ctx)}"


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


@register
class WafLogGroup(Step):
    """Where the web ACL's request logs go; deleted with its logs by `down`."""

    kind = "waf_log_group"
    gone_codes = frozenset({"ResourceNotFoundException"})
    aws_type = "AWS::Logs::LogGroup"
    listing = Listing("waf_log_group", "logs", "describe_log_groups", "logGroups", "logGroupName",
                      label="CloudWatch Logs groups (WAF)", params={"logGroupNamePrefix": WAF_LOG_PREFIX},
                      tags=ItemTags("list_tags_log_group", "logGroupName", "tags", as_map=True),
                      detail=lambda i: {"size_gb": (i.get("storedBytes") or 0) / BYTES_PER_GB},
                      price=log_storage_charges, price_keys=(LOGS_STORAGE_GB_MONTH,))
    iam = Iam(create=(actions("logs:CreateLogGroup", "logs:TagResource", "logs:TagLogGroup",
                              "logs:PutRetentionPolicy", on=LOG_GROUP_ARN),),
              read=(actions("logs:DescribeLogGroups"),
                    actions("logs:ListTagsLogGroup", "logs:ListTagsForResource", on=LOG_GROUP_ARN)),
              change=(actions("logs:TagResource", "logs:TagLogGroup", "logs:PutRetentionPolicy", on=LOG_GROUP_ARN),),
              delete=(actions("logs:DeleteLogGroup", on=LOG_GROUP_ARN),))

    # The flow log group (steps/security/flow_log_group.py) is this with its own name and retention.
    retention_days = RETENTION_DAYS

    def __init__(self):
        super().__init__("waf-log-group", depends_on=())

    def group_name(self, ctx) -> str:
        return log_group_name(ctx)

    def group_arn(self, ctx) -> str:
        from steps.storage.s3_bucket import partition

        return f"arn:{partition(ctx.region)}:logs:{ctx.region}:{ctx.account}:log-group:{self.group_name(ctx)}"

    @classmethod
    def instances(cls, config):
        return [cls()] if config.waf else []

    # -- find --------------------------------------------------------------------------------
    def find_all(self, ctx, known_id):
        logs = ctx.client("logs")
        name = known_id or self.group_name(ctx)
        # A prefix, so an exact match is picked out of what starts with the name.
        groups = [g for g in logs.describe_log_groups(logGroupNamePrefix=name).get("logGroups", [])
                  if g["logGroupName"] == name]
        if not groups:
            return []
        tags = self._tags(ctx, name)
        if known_id:
            ctx.claim(self.name, name, _pairs(tags), "log group")
        return [self._resource(groups[0], tags)] if ctx.owns(_pairs(tags), self.name) else []

    @staticmethod
    def _tags(ctx, name) -> dict:
        return ctx.client("logs").list_tags_log_group(logGroupName=name).get("tags", {})

    @staticmethod
    def _resource(group, tags: dict) -> Resource:
        arn = group["arn"][:-2] if group.get("arn", "").endswith(":*") else group.get("arn")
        return Resource(id=group["logGroupName"], attrs={"name": group["logGroupName"], "arn": arn},
                        raw={**group, "Tags": _pairs(tags)})

    def check_name(self, ctx, known_id):
        name = self.group_name(ctx)
        groups = [g for g in ctx.client("logs").describe_log_groups(logGroupNamePrefix=name).get("logGroups", [])
                  if g["logGroupName"] == name]
        if groups and not ctx.is_ours(_pairs(self._tags(ctx, name)), self.name):
            raise ConfigError(f"a CloudWatch Logs group named {name} exists and is not this stack's",
                              hint="delete it (`aws logs delete-log-group --log-group-name "
                                   f"{name}`) or use another --stack name")

    # -- create ------------------------------------------------------------------------------
    def create(self, ctx):
        from botocore.exceptions import ClientError

        logs = ctx.client("logs")
        name = self.group_name(ctx)
        tags = {t["Key"]: t["Value"] for t in ctx.tags(self.name)}
        try:
            logs.create_log_group(logGroupName=name, tags=tags)
        except ClientError as e:
            if error_code(e) != "ResourceAlreadyExistsException":
                raise
            raise ConfigError(f"a CloudWatch Logs group named {name} exists and is not this stack's",
                              hint="delete it or use another --stack name") from None
        logs.put_retention_policy(logGroupName=name, retentionInDays=self.retention_days)
        return Resource(id=name, attrs={"name": name, "arn": self.group_arn(ctx)},
                        raw={"logGroupName": name, "retentionInDays": self.retention_days, "Tags": ctx.tags(self.name)})

    # -- converge ----------------------------------------------------------------------------
    def update(self, ctx, resource, apply):
        logs = ctx.client("logs")
        changes = ctx.converge_tags(resource.raw.get("Tags", []), self.name, apply, lambda missing: logs.tag_log_group(
            logGroupName=resource.id, tags={t["Key"]: t["Value"] for t in missing}))
        have = resource.raw.get("retentionInDays")
        if have != self.retention_days:
            if apply:
                logs.put_retention_policy(logGroupName=resource.id, retentionInDays=self.retention_days)
            changes.append(f"keep logs {self.retention_days} days (was {have or 'forever'})")
        return changes

    # -- delete ------------------------------------------------------------------------------
    def delete(self, ctx, resource):
        ctx.client("logs").delete_log_group(logGroupName=resource.id)

    def outputs(self, resource):
        return {"waf_log_group": resource.id}

    def describe(self, resource):
        return f"{resource.id}, kept {resource.raw.get('retentionInDays', self.retention_days)} days"


def _pairs(tags: dict) -> list[dict]:
    return [{"Key": k, "Value": v} for k, v in tags.items()]
