"""The role VPC flow logs assume to write to their log group (--audit)."""
from provisioner.engine.kinds import Iam, actions
from provisioner.engine.registry import register

from steps.identity.iam_role import StackRole
from steps.security.flow_log_group import flow_log_group_name
from steps.storage.s3_bucket import partition

INLINE_POLICY = "deliver-flow-logs"
FLOW_LOG_ROLE_ARN = "arn:{partition}:iam::{account}:role/provision/{stack}-{region}-flow-logs"


def delivery_policy(ctx) -> dict:
    """What the flow logs service does with the role: streams and events in the one group."""
    group = (f"arn:{partition(ctx.region)}:logs:{ctx.region}:{ctx.account or '*'}:log-group:"
             f"{flow_log_group_name(ctx)}")
    return {"Version": "2012-10-17",
            "Statement": [{"Sid": "DeliverFlowLogs", "Effect": "Allow",
                           "Action": ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
                           "Resource": [group, f"{group}:*"]}]}


@register
class FlowLogRole(StackRole):
    """Assumed by vpc-flow-logs.amazonaws.com for this account only; writes to the flow log group only."""

    kind = "flow_log_delivery_role"
    gone_codes = frozenset({"NoSuchEntity"})
    iam = Iam(create=(actions("iam:CreateRole", "iam:TagRole", "iam:PutRolePolicy", on=FLOW_LOG_ROLE_ARN),),
              read=(actions("iam:GetRole", "iam:GetRolePolicy", "iam:ListRolePolicies", "iam:ListAttachedRolePolicies",
                            "iam:ListRoleTags", "iam:ListInstanceProfilesForRole", on=FLOW_LOG_ROLE_ARN),),
              change=(actions("iam:TagRole", "iam:PutRolePolicy", "iam:UpdateAssumeRolePolicy", "iam:DeleteRolePolicy",
                              "iam:DetachRolePolicy", on=FLOW_LOG_ROLE_ARN),),
              delete=(actions("iam:DeleteRole", "iam:DeleteRolePolicy", "iam:DetachRolePolicy", "iam:ListRolePolicies",
                              "iam:ListAttachedRolePolicies", on=FLOW_LOG_ROLE_ARN),))
    suffix, service, inline_policy = "flow-logs", "vpc-flow-logs.amazonaws.com", INLINE_POLICY
    purpose = "VPC flow logs delivery to CloudWatch Logs"
    policy_summary = "the flow log group only"

    def __init__(self):
        super().__init__("flow-log-role", depends_on=())
        self._account = None

    @classmethod
    def instances(cls, config):
        return [cls()] if config.audit else []

    def policy(self, ctx):
        # The trust names the account: kept for _converge_trust, which reads `trust` without ctx.
        self._account = ctx.account
        return delivery_policy(ctx)

    @property
    def trust(self) -> dict:
        # aws:SourceAccount: the service assumes the role only for this account's flow logs
        # (the confused deputy: another account's flow log naming this role's ARN is refused).
        statement = {"Effect": "Allow", "Principal": {"Service": self.service}, "Action": "sts:AssumeRole"}
        if self._account:
            statement["Condition"] = {"StringEquals": {"aws:SourceAccount": self._account}}
        return {"Version": "2012-10-17", "Statement": [statement]}

    def create(self, ctx):
        self._account = ctx.account
        return super().create(ctx)

    def update(self, ctx, resource, apply):
        self._account = ctx.account
        return super().update(ctx, resource, apply)
