from provisioner.engine.kinds import Iam, actions
from provisioner.engine.registry import register

from steps.edge.elbv2 import ElbStep, actions_value, described, forward, listener_on
from steps.edge.listener import describe_actions

PATH_PATTERN = "/api/*"
# Rules are evaluated lowest first, before the listener's default action (the frontend).
PRIORITY = "10"
HTTPS_PORT = 443


RULE_ARNS = ("arn:{partition}:elasticloadbalancing:{region}:{account}:listener-rule/app/{stack}-*",
             "arn:{partition}:elasticloadbalancing:{region}:{account}:listener/app/{stack}-*")


@register
class ListenerRule(ElbStep):
    """/api/* on the HTTPS listener to the backend target group."""

    kind = "listener_rule"
    gone_codes = frozenset({"RuleNotFound"})
    aws_type = "AWS::ElasticLoadBalancingV2::ListenerRule"
    # Deleted with its listener; tagged, but found through it.
    found_through = "listener"
    iam = Iam(create=(actions("elasticloadbalancing:CreateRule", "elasticloadbalancing:AddTags", on=RULE_ARNS),),
              read=(actions("elasticloadbalancing:DescribeRules", "elasticloadbalancing:DescribeTags"),),
              change=(actions("elasticloadbalancing:ModifyRule", "elasticloadbalancing:SetRulePriorities",
                              "elasticloadbalancing:AddTags", on=RULE_ARNS),),
              delete=(actions("elasticloadbalancing:DeleteRule", on=RULE_ARNS),))
    arn_key = "RuleArn"

    def __init__(self):
        super().__init__("api-routing-rule", depends_on=("https-listener", "backend-target-group"))

    def by_arn(self, ctx, arn):
        return described(ctx.client("elbv2").describe_rules, "Rules", RuleArns=[arn])

    def candidates(self, ctx):
        listener = ctx.dep("https-listener")
        arn = listener.id if listener is not None else (listener_on(ctx, HTTPS_PORT) or {}).get("ListenerArn")
        if arn is None:
            return []
        rules = described(ctx.client("elbv2").describe_rules, "Rules", ListenerArn=arn)
        return [r for r in rules if not r.get("IsDefault")]

    @staticmethod
    def conditions():
        return [{"Field": "path-pattern", "PathPatternConfig": {"Values": [PATH_PATTERN]}}]

    def create(self, ctx):
        tags = ctx.tags(self.name)
        rule = ctx.retry("eventual-consistency", ctx.client("elbv2").create_rule,
                         ListenerArn=ctx.dep("https-listener").id, Priority=int(PRIORITY),
                         Conditions=self.conditions(), Actions=forward(ctx.dep("backend-target-group").id),
                         Tags=tags)["Rules"][0]
        return self.created(rule, tags)

    def update(self, ctx, resource, apply):
        changes = super().update(ctx, resource, apply)
        rule, elb = resource.raw, ctx.client("elbv2")
        differ = {}
        if conditions_value(rule.get("Conditions", [])) != conditions_value(self.conditions()):
            changes.append(f"set condition to path {PATH_PATTERN} "
                           f"(was {describe_conditions(rule.get('Conditions', []))})")
            differ["Conditions"] = self.conditions()
        backend = ctx.dep("backend-target-group")
        if backend is not None and actions_value(rule.get("Actions", [])) != actions_value(forward(backend.id)):
            changes.append(f"set action to {describe_actions(forward(backend.id))} "
                           f"(was {describe_actions(rule.get('Actions', []))})")
            differ["Actions"] = forward(backend.id)
        if apply and differ:
            elb.modify_rule(RuleArn=resource.id, **differ)
        if str(rule.get("Priority")) != PRIORITY:
            changes.append(f"set priority to {PRIORITY} (was {rule.get('Priority')})")
            if apply:
                elb.set_rule_priorities(RulePriorities=[{"RuleArn": resource.id, "Priority": int(PRIORITY)}])
        return changes

    def delete(self, ctx, resource):
        ctx.client("elbv2").delete_rule(RuleArn=resource.id)

    def describe(self, resource):
        rule = resource.raw
        return (f"{describe_conditions(rule.get('Conditions', []))} -> {describe_actions(rule.get('Actions', []))}"
                f" (priority {rule.get('Priority')})")


def conditions_value(conditions: list[dict]) -> tuple:
    """Conditions as a comparable value: AWS answers with both the legacy Values and the
    PathPatternConfig."""
    out = []
    for c in conditions:
        values = c.get("PathPatternConfig", {}).get("Values") if c["Field"] == "path-pattern" else None
        out.append((c["Field"], tuple(sorted(values or c.get("Values", [])))))
    return tuple(sorted(out))


def describe_conditions(conditions: list[dict]) -> str:
    return ", ".join(f"{field} {' or '.join(values)}" for field, values in conditions_value(conditions)) or "none"
