"""The Auto Scaling group's scaling policies on CPU (--monitoring): step scaling, out by one
instance when the cpu-high alarm fires (above 70% for 2 minutes), in by one when the cpu-low alarm
does (below 30% for 5 minutes), 300 s of warm-up before a new instance's CPU counts.

Step scaling rather than target tracking: the figures to meet (the e-commerce platform's) are two
thresholds with their own durations, and only step scaling's alarms are ours to set. A target
tracking policy makes its own alarms, whose periods AWS fixes (3 minutes out, 15 in) and which
must not be edited; and the 2-minute CPU alarm, which also notifies, is then the one that scales.

The policies belong to the group: DeleteAutoScalingGroup deletes them with it. `down` deletes them
first all the same (a few calls), and a group that is gone or was never made (a half-built stack)
has no policies to find, so there is nothing to delete. `provision scale N` sets the desired
capacity; the policies move it within min..max afterwards.
"""

from provisioner.engine.context import Resource
from provisioner.engine.kinds import Iam, actions
from provisioner.engine.registry import Step, created, register

from steps.compute.auto_scaling_group import GROUP_ARN

WARMUP_SECONDS = 300


class Direction:
    def __init__(self, step, adjustment, bound):
        self.step, self.adjustment, self.bound = step, adjustment, bound


DIRECTIONS = (Direction("scale-out-policy", 1, "MetricIntervalLowerBound"),
              Direction("scale-in-policy", -1, "MetricIntervalUpperBound"))


@register
class ScalingPolicy(Step):
    kind = "scaling_policy"
    tagged = False
    found_through = "auto_scaling_group"
    gone_codes = frozenset()  # Auto Scaling answers a missing group or policy with a plain ValidationError
    aws_type = "AWS::AutoScaling::ScalingPolicy"
    iam = Iam(create=(actions("autoscaling:PutScalingPolicy", on=GROUP_ARN),),
              read=(actions("autoscaling:DescribePolicies", "autoscaling:DescribeAutoScalingGroups"),),
              change=(actions("autoscaling:PutScalingPolicy", on=GROUP_ARN),),
              delete=(actions("autoscaling:DeletePolicy", on=GROUP_ARN),))

    def __init__(self, direction: Direction):
        self.direction = direction
        super().__init__(direction.step, depends_on=(created("auto-scaling-group"),))

    @classmethod
    def instances(cls, config):
        return [cls(d) for d in DIRECTIONS] if config.monitoring else []

    def policy_name(self, ctx):
        return f"{ctx.stack}-{self.name}"

    def wanted(self):
        return {"PolicyType": "StepScaling", "AdjustmentType": "ChangeInCapacity", "MetricAggregationType": "Average",
                "EstimatedInstanceWarmup": WARMUP_SECONDS,
                "StepAdjustments": [{self.direction.bound: 0.0, "ScalingAdjustment": self.direction.adjustment}]}

    # -- find --------------------------------------------------------------------------------
    def find_all(self, ctx, known_id):
        group = ctx.dep("auto-scaling-group")
        if group is None:
            return []
        autoscaling = ctx.client("autoscaling")
        groups = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[group.id])["AutoScalingGroups"]
        if not groups:
            return []  # deleted with its group
        policies = autoscaling.describe_policies(AutoScalingGroupName=group.id,
                                                 PolicyNames=[self.policy_name(ctx)]).get("ScalingPolicies", [])
        return [Resource(id=p["PolicyName"], attrs={"arn": p["PolicyARN"], "group": group.id}, raw=p)
                for p in policies if p.get("PolicyName") == self.policy_name(ctx)]

    # -- create ------------------------------------------------------------------------------
    def _put(self, ctx, group):
        return ctx.client("autoscaling").put_scaling_policy(AutoScalingGroupName=group,
                                                            PolicyName=self.policy_name(ctx), **self.wanted())

    def create(self, ctx):
        group = ctx.dep("auto-scaling-group").id
        arn = self._put(ctx, group).get("PolicyARN")
        if not arn:  # PutScalingPolicy answers it; an emulator may not: read it back
            arn = ctx.client("autoscaling").describe_policies(
                AutoScalingGroupName=group, PolicyNames=[self.policy_name(ctx)])["ScalingPolicies"][0]["PolicyARN"]
        return Resource(id=self.policy_name(ctx), attrs={"arn": arn, "group": group},
                        raw={"PolicyName": self.policy_name(ctx), "PolicyARN": arn, **self.wanted()})

    # -- converge ----------------------------------------------------------------------------
    def update(self, ctx, resource, apply):
        want, raw = self.wanted(), resource.raw
        have = {k: raw.get(k) for k in want}
        have["StepAdjustments"] = [{k: (float(v) if k != "ScalingAdjustment" else v) for k, v in s.items()}
                                   for s in raw.get("StepAdjustments") or []]
        if have == want:
            return []
        if apply:
            self._put(ctx, resource.attrs["group"])
        return [f"step scaling by {self.direction.adjustment:+d} instance, {WARMUP_SECONDS} s warm-up"]

    # -- delete ------------------------------------------------------------------------------
    def delete(self, ctx, resource):
        ctx.client("autoscaling").delete_policy(AutoScalingGroupName=resource.attrs["group"], PolicyName=resource.id)

    def describe(self, resource):
        return (f"{self.direction.adjustment:+d} instance on its CPU alarm, warm-up "
                f"{resource.raw.get('EstimatedInstanceWarmup', WARMUP_SECONDS)} s")
