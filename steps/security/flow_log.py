"""The VPC's flow log (--audit): every accepted and rejected connection, to CloudWatch Logs."""

from botocore.exceptions import ClientError

from provisioner.engine.kinds import FREE, Iam, actions, ec2_listing
from provisioner.engine.registry import Ec2Step, register

from steps.security.flow_log_group import flow_log_group_name
from steps.security.flow_log_role import FLOW_LOG_ROLE_ARN

TRAFFIC_TYPE = "ALL"


def unsuccessful_error(item: dict) -> ClientError:
    """CreateFlowLogs answers 200 and reports a refusal per resource (Unsuccessful): as the
    ClientError it would be, so that the retry table decides by its code."""
    error = item.get("Error") or {}
    return ClientError({"Error": {"Code": error.get("Code") or "Unsuccessful",
                                  "Message": error.get("Message") or f"CreateFlowLogs refused {item.get('ResourceId')}"}},
                       "CreateFlowLogs")


@register
class FlowLog(Ec2Step):
    """Captures ALL traffic (accepted and rejected) of the VPC's interfaces to the flow log group,
    delivered with the flow log role. Free as such: CloudWatch Logs bills the ingestion (the
    usage-based notes) and the group its storage."""

    kind = "flow_log"
    gone_codes = frozenset({"InvalidFlowLogId.NotFound"})
    aws_type = "AWS::EC2::FlowLog"
    listing = ec2_listing("flow_log", "describe_flow_logs", "FlowLogs", "FlowLogId", label="VPC flow logs",
                          created_field="CreationTime", price=FREE)
    iam = Iam(create=(actions("ec2:CreateFlowLogs", "ec2:CreateTags", "logs:CreateLogDelivery"),
                      actions("iam:PassRole", on=FLOW_LOG_ROLE_ARN,
                              condition={"StringEquals": {"iam:PassedToService": "vpc-flow-logs.amazonaws.com"}})),
              read=(actions("ec2:DescribeFlowLogs"),), change=(actions("ec2:CreateTags"),),
              delete=(actions("ec2:DeleteFlowLogs", "logs:DeleteLogDelivery"),))
    describe_operation, result_key = "describe_flow_logs", "FlowLogs"
    id_field, id_filter, tag_resource_type = "FlowLogId", "flow-log-id", "vpc-flow-log"

    def __init__(self):
        super().__init__("flow-log", depends_on=("vpc", "flow-log-group", "flow-log-role"))

    @classmethod
    def instances(cls, config):
        return [cls()] if config.audit else []

    def attrs(self, item):
        return {"vpc_id": item.get("ResourceId"), "log_group": item.get("LogGroupName")}

    def create(self, ctx):
        def create():
            answer = ctx.ec2.create_flow_logs(
                ResourceIds=[ctx.dep("vpc").id], ResourceType="VPC", TrafficType=TRAFFIC_TYPE,
                LogDestinationType="cloud-watch-logs", LogGroupName=flow_log_group_name(ctx),
                DeliverLogsPermissionArn=ctx.dep("flow-log-role").attrs["arn"],
                TagSpecifications=ctx.tag_specifications(self.tag_resource_type, self.name))
            if answer.get("Unsuccessful"):
                raise unsuccessful_error(answer["Unsuccessful"][0])
            return answer["FlowLogIds"][0]

        flow_log_id = ctx.retry("flow-log-role", create)
        [item] = ctx.retry("eventual-consistency", self._describe, ctx,
                           [{"Name": self.id_filter, "Values": [flow_log_id]}]) or [{
                               "FlowLogId": flow_log_id, "ResourceId": ctx.dep("vpc").id,
                               "LogGroupName": flow_log_group_name(ctx), "Tags": ctx.tags(self.name)}]
        return self.to_resource(item)

    def delete(self, ctx, resource):
        answer = ctx.ec2.delete_flow_logs(FlowLogIds=[resource.id])
        for item in answer.get("Unsuccessful") or []:
            error = unsuccessful_error(item)
            if error.response["Error"]["Code"] not in self.gone_codes:
                raise error

    def outputs(self, resource):
        return {"flow_log": resource.id}

    def describe(self, resource):
        return f"{TRAFFIC_TYPE} traffic of {resource.attrs.get('vpc_id')} to {resource.attrs.get('log_group')}"
