"""The CloudWatch Logs group the web ACL logs to (--waf): `aws-waf-logs-<stack>`, kept 30 days."""

from provisioner.engine.kinds import ItemTags, Listing
from provisioner.engine.registry import register

from steps.monitoring.log_group import (BYTES_PER_GB, LOGS_STORAGE_GB_MONTH, LogGroupStep, log_group_iam,
                                        log_storage_charges)

# WAF delivers logs only to a log group whose name starts with this (and to nothing else in
# CloudWatch Logs): PutLoggingConfiguration refuses any other name (WAFInvalidParameterException).
WAF_LOG_PREFIX = "aws-waf-logs-"
RETENTION_DAYS = 30
LOG_GROUP_ARN = "arn:{partition}:logs:{region}:{account}:log-group:aws-waf-logs-{stack}*"


def log_group_name(ctx) -> str:
    return f"{WAF_LOG_PREFIX}{ctx.stack}"


def log_group_arn(ctx) -> str:
    """The ARN WAF takes as a destination: without the ":*" DescribeLogGroups appends."""
    from steps.storage.s3_bucket import partition

    return f"arn:{partition(ctx.region)}:logs:{ctx.region}:{ctx.account}:log-group:{log_group_name(ctx)}"


@register
class WafLogGroup(LogGroupStep):
    """Where the web ACL's request logs go; deleted with its logs by `down`."""

    kind = "waf_log_group"
    gone_codes = frozenset({"ResourceNotFoundException"})
    listing = Listing("waf_log_group", "logs", "describe_log_groups", "logGroups", "logGroupName",
                      label="CloudWatch Logs groups (WAF)", params={"logGroupNamePrefix": WAF_LOG_PREFIX},
                      tags=ItemTags("list_tags_log_group", "logGroupName", "tags", as_map=True),
                      detail=lambda i: {"size_gb": (i.get("storedBytes") or 0) / BYTES_PER_GB},
                      price=log_storage_charges, price_keys=(LOGS_STORAGE_GB_MONTH,))
    iam = log_group_iam(LOG_GROUP_ARN)

    def __init__(self, audit: bool = False):
        super().__init__("waf-log-group", depends_on=(), audit=audit)

    @classmethod
    def instances(cls, config):
        return [cls(config.audit)] if config.waf else []

    def resource_name(self, ctx):
        return log_group_name(ctx)

    def retention(self, ctx):
        return RETENTION_DAYS

    def arn(self, ctx):
        return log_group_arn(ctx)

    def outputs(self, resource):
        return {"waf_log_group": resource.id}
