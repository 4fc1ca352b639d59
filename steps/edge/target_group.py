from provisioner.engine.errors import DriftConflict
from provisioner.engine.kinds import ELB_TAGS, FREE, Iam, Listing, actions
from provisioner.engine.registry import register

from steps.edge.elbv2 import ElbStep, described

# Seconds and counts. A target is healthy after 2 good checks 15 s apart (30 s after the app
# answers) and taken out after 3 bad ones (45 s): quick enough for a demo, slow enough that one
# slow answer during a deploy does not drop it.
HEALTH_CHECK = {
    "HealthCheckProtocol": "HTTP",
    "HealthCheckPort": "traffic-port",
    "HealthCheckEnabled": True,
    "HealthCheckIntervalSeconds": 15,
    "HealthCheckTimeoutSeconds": 5,
    "HealthyThresholdCount": 2,
    "UnhealthyThresholdCount": 3,
}
# AWS's default is 300 s: every scale-in and every `down` would wait five minutes per instance for
# connections that a stateless demo app does not have.
DEREGISTRATION_DELAY = "30"
DEREGISTRATION_KEY = "deregistration_delay.timeout_seconds"


TARGET_GROUP_ARN = "arn:{partition}:elasticloadbalancing:{region}:{account}:targetgroup/{stack}-*"


@register
class TargetGroup(ElbStep):
    """frontend (port 3000, health check /) and backend (port 5000, health check /api/health)."""

    kind = "target_group"
    gone_codes = frozenset({"TargetGroupNotFound"})
    # A target group made moments ago can be unknown to a listener forwarding to it.
    not_found_codes = frozenset({"TargetGroupNotFound"})
    aws_type = "AWS::ElasticLoadBalancingV2::TargetGroup"
    listing = Listing("target_group", "elbv2", "describe_target_groups", "TargetGroups", "TargetGroupArn",
                      tags=ELB_TAGS, price=FREE)
    iam = Iam(create=(actions("elasticloadbalancing:CreateTargetGroup", "elasticloadbalancing:AddTags",
                              "elasticloadbalancing:ModifyTargetGroupAttributes", on=TARGET_GROUP_ARN),),
              read=(actions("elasticloadbalancing:DescribeTargetGroups", "elasticloadbalancing:DescribeTags",
                            "elasticloadbalancing:DescribeTargetGroupAttributes",
                            "elasticloadbalancing:DescribeTargetHealth"),),
              change=(actions("elasticloadbalancing:ModifyTargetGroup", "elasticloadbalancing:AddTags",
                              "elasticloadbalancing:ModifyTargetGroupAttributes", on=TARGET_GROUP_ARN),),
              delete=(actions("elasticloadbalancing:DeleteTargetGroup", on=TARGET_GROUP_ARN),))
    arn_key = "TargetGroupArn"

    def __init__(self, role: str, port: int, health_check_path: str, matcher: str):
        super().__init__(f"{role}-target-group", depends_on=("vpc",))
        self.role, self.port, self.health_check_path, self.matcher = role, port, health_check_path, matcher

    @classmethod
    def instances(cls, config):
        # The storefront answers redirects (3xx) on some paths; the API's health route answers
        # exactly 200 when the backend is ready.
        return [cls("frontend", 3000, "/", "200-399"), cls("backend", 5000, "/api/health", "200")]

    def group_name(self, ctx):
        return f"{ctx.stack}-{self.role}"

    def health_check(self):
        return dict(HEALTH_CHECK, HealthCheckPath=self.health_check_path, Matcher={"HttpCode": self.matcher})

    def attrs(self, item):
        return {"arn": item["TargetGroupArn"], "name": item["TargetGroupName"], "port": item["Port"]}

    def by_arn(self, ctx, arn):
        return described(ctx.client("elbv2").describe_target_groups, "TargetGroups", TargetGroupArns=[arn])

    def candidates(self, ctx):
        # Names are unique in a region, so this is at most one group, ours if its tags say so.
        return described(ctx.client("elbv2").describe_target_groups, "TargetGroups", Names=[self.group_name(ctx)])

    def create(self, ctx):
        elb = ctx.client("elbv2")
        tags = ctx.tags(self.name)
        group = ctx.retry("eventual-consistency", elb.create_target_group,
                          Name=self.group_name(ctx), Protocol="HTTP", ProtocolVersion="HTTP1", Port=self.port,
                          VpcId=ctx.dep("vpc").id, TargetType="instance", Tags=tags,
                          **self.health_check())["TargetGroups"][0]
        ctx.retry("eventual-consistency", elb.modify_target_group_attributes,
                  TargetGroupArn=group["TargetGroupArn"],
                  Attributes=[{"Key": DEREGISTRATION_KEY, "Value": DEREGISTRATION_DELAY}])
        return self.created(group, tags)

    def update(self, ctx, resource, apply):
        group = resource.raw
        fixed = {"Protocol": "HTTP", "Port": self.port, "TargetType": "instance"}
        if ctx.dep("vpc") is not None:
            fixed["VpcId"] = ctx.dep("vpc").id
        wrong = {k: group.get(k) for k, v in fixed.items() if group.get(k) != v}
        if wrong:
            raise DriftConflict(
                f"target group {group['TargetGroupName']} has {wrong}, the stack needs {fixed}; "
                "these cannot be changed in place",
                hint="delete the target group (or `provision down`) and run `provision up` again")
        changes = super().update(ctx, resource, apply)
        elb = ctx.client("elbv2")
        wanted = self.health_check()
        differ = {k: v for k, v in wanted.items() if group.get(k) != v}
        changes += [f"set {k} to {v} (was {group.get(k)})" for k, v in differ.items()]
        if apply and differ:
            elb.modify_target_group(TargetGroupArn=resource.id, **wanted)
        attributes = {a["Key"]: a["Value"] for a in
                      elb.describe_target_group_attributes(TargetGroupArn=resource.id)["Attributes"]}
        if attributes.get(DEREGISTRATION_KEY) != DEREGISTRATION_DELAY:
            changes.append(f"set the deregistration delay to {DEREGISTRATION_DELAY}s "
                           f"(was {attributes.get(DEREGISTRATION_KEY)}s)")
            if apply:
                elb.modify_target_group_attributes(TargetGroupArn=resource.id, Attributes=[
                    {"Key": DEREGISTRATION_KEY, "Value": DEREGISTRATION_DELAY}])
        return changes

    def delete(self, ctx, resource):
        # AWS refuses (ResourceInUse) while a listener or rule forwards to the group; those go
        # first in the reversed graph, but their deletion can take a moment to reach the group.
        elb = ctx.client("elbv2")
        ctx.retry("dependency", elb.delete_target_group, TargetGroupArn=resource.id,
                  blocked_by=lambda: ", ".join(
                      f"load balancer {arn.split('/')[-2]}" for g in self.by_arn(ctx, resource.id)
                      for arn in g.get("LoadBalancerArns", [])))

    def outputs(self, resource):
        return {f"{self.role}_target_group_arn": resource.id}

    def describe(self, resource):
        group = resource.raw
        return (f"HTTP:{resource.attrs.get('port')}, health check {group.get('HealthCheckPath')} "
                f"every {group.get('HealthCheckIntervalSeconds')}s "
                f"expecting {group.get('Matcher', {}).get('HttpCode')}")
