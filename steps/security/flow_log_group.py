"""The CloudWatch Logs group the VPC's flow logs go to (--audit): `/provision/<stack>/flow-logs`."""

from provisioner.engine.kinds import Iam, ItemTags, Listing, actions
from provisioner.engine.registry import register

from steps.edge.waf_log_group import BYTES_PER_GB, LOGS_STORAGE_GB_MONTH, WafLogGroup, log_storage_charges

# Flow logs go to CloudWatch Logs rather than the audit bucket: Logs Insights queries them at
# once (who talked to port 22?), a metric filter or alarm can watch them, and the retention is
# one setting. S3 would be cheaper at high volume ($0.25/GB delivered against $0.50/GB ingested),
# which a lab stack's traffic does not reach.
RETENTION_DAYS = 30
FLOW_LOG_GROUP_ARN = "arn:{partition}:logs:{region}:{account}:log-group:/provision/{stack}/flow-logs*"


def flow_log_group_name(ctx) -> str:
    return f"/provision/{ctx.stack}/flow-logs"


@register
class FlowLogGroup(WafLogGroup):
    """Where the VPC's flow logs go, kept 30 days; deleted with its logs by `down`."""

    kind = "flow_log_group"
    gone_codes = frozenset({"ResourceNotFoundException"})
    # Other groups of the tool share the /provision/ prefix: this listing counts only its own.
    listing = Listing("flow_log_group", "logs", "describe_log_groups", "logGroups", "logGroupName",
                      label="CloudWatch Logs groups (flow logs)", params={"logGroupNamePrefix": "/provision/"},
                      candidate=lambda ctx, i: i["logGroupName"].endswith("/flow-logs"),
                      tags=ItemTags("list_tags_log_group", "logGroupName", "tags", as_map=True),
                      detail=lambda i: {"size_gb": (i.get("storedBytes") or 0) / BYTES_PER_GB},
                      price=log_storage_charges, price_keys=(LOGS_STORAGE_GB_MONTH,))
    iam = Iam(create=(actions("logs:CreateLogGroup", "logs:TagResource", "logs:TagLogGroup",
                              "logs:PutRetentionPolicy", on=FLOW_LOG_GROUP_ARN),),
              read=(actions("logs:DescribeLogGroups"),
                    actions("logs:ListTagsLogGroup", "logs:ListTagsForResource", on=FLOW_LOG_GROUP_ARN)),
              change=(actions("logs:TagResource", "logs:TagLogGroup", "logs:PutRetentionPolicy",
                              on=FLOW_LOG_GROUP_ARN),),
              delete=(actions("logs:DeleteLogGroup", on=FLOW_LOG_GROUP_ARN),))
    retention_days = RETENTION_DAYS

    def __init__(self):
        super(WafLogGroup, self).__init__("flow-log-group", depends_on=())

    @classmethod
    def instances(cls, config):
        return [cls()] if config.audit else []

    def group_name(self, ctx) -> str:
        return flow_log_group_name(ctx)

    def outputs(self, resource):
        return {"flow_log_group": resource.id}
