"""The CloudWatch Logs group the VPC's flow logs go to (--audit): `/provision/<stack>/flow-logs`,
kept 30 days and encrypted with the stack's key."""

from provisioner.engine.registry import register

from steps.monitoring.log_group import LogGroupStep, log_group_iam, log_group_listing

# Flow logs go to CloudWatch Logs rather than the audit bucket: Logs Insights queries them at
# once (who talked to port 22?), a metric filter or alarm can watch them, and the retention is
# one setting. S3 would be cheaper at high volume ($0.25/GB delivered against $0.50/GB ingested),
# which a lab stack's traffic does not reach.
RETENTION_DAYS = 30
FLOW_LOG_PREFIX = "/provision/"
FLOW_LOG_GROUP_ARN = "arn:{partition}:logs:{region}:{account}:log-group:/provision/{stack}/flow-logs"


def flow_log_group_name(ctx) -> str:
    return f"{FLOW_LOG_PREFIX}{ctx.stack}/flow-logs"


@register
class FlowLogGroup(LogGroupStep):
    """Where the VPC's flow logs go, kept 30 days; deleted with its logs by `down`."""

    kind = "flow_log_group"
    gone_codes = frozenset({"ResourceNotFoundException"})
    # Other groups of the tool share the /provision/ prefix: this listing counts only its own.
    listing = log_group_listing("flow_log_group", FLOW_LOG_PREFIX, "CloudWatch Logs groups (flow logs)",
                                candidate=lambda ctx, item: item.get("logGroupName", "").endswith("/flow-logs"))
    iam = log_group_iam(FLOW_LOG_GROUP_ARN)

    def __init__(self):
        # Only made with --audit, so always under the stack's key.
        super().__init__("flow-log-group", depends_on=(), audit=True)

    @classmethod
    def instances(cls, config):
        return [cls()] if config.audit else []

    def resource_name(self, ctx):
        return flow_log_group_name(ctx)

    def retention(self, ctx):
        return RETENTION_DAYS

    def outputs(self, resource):
        return {"flow_log_group": resource.id}
