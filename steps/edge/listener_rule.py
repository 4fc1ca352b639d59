from provisioner.engine.kinds import Iam, actions
from provisioner.engine.registry import created, register

from steps.edge.cloudfront_distribution import ORIGIN_HEADER, origin_secret
from steps.edge.elbv2 import ElbStep, actions_value, described, forward, listener_on
from steps.edge.listener import describe_actions

PATH_PATTERN = "/api/*"
# Rules are evaluated lowest first, before the listener's default action (the frontend; with
# --cdn a 403, and a second rule forwards to the frontend what carries CloudFront's header).
PRIORITY = "10"
FRONTEND_PRIORITY = "20"
HTTPS_PORT = 443
DISTRIBUTION = "cloudfront-distribution"


RULE_ARNS = ("arn:{partition}:elasticloadbalancing:{region}:{account}:listener-rule/app/{stack}-*",
             "arn:{partition}:elasticloadbalancing:{region}:{account}:listener/app/{stack}-*")


@register
class ListenerRule(ElbStep):
    """/api/* on the HTTPS listener to the backend target group; with --cdn only for requests that
    carry CloudFront's secret header, and a second rule for the frontend on the same terms."""

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

    def __init__(self, name="api-routing-rule", target="backend-target-group", path=PATH_PATTERN,
                 priority=PRIORITY, cdn=False):
        # The header's value is the distribution's: made first (its creation only), and neither
        # holds the other in `down`.
        super().__init__(name, depends_on=("https-listener", target)
                         + ((created(DISTRIBUTION, held=False),) if cdn else ()))
        self.target, self.path, self.priority, self.cdn = target, path, priority, cdn

    @classmethod
    def instances(cls, config):
        rules = [cls(cdn=config.cdn)]
        if config.cdn:
            rules.append(cls("cdn-frontend-rule", "frontend-target-group", None, FRONTEND_PRIORITY, cdn=True))
        return rules

    def by_arn(self, ctx, arn):
        return described(ctx.client("elbv2").describe_rules, "Rules", RuleArns=[arn])

    def candidates(self, ctx):
        listener = ctx.dep("https-listener")
        arn = listener.id if listener is not None else (listener_on(ctx, HTTPS_PORT) or {}).get("ListenerArn")
        if arn is None:
            return []
        rules = described(ctx.client("elbv2").describe_rules, "Rules", ListenerArn=arn)
        return [r for r in rules if not r.get("IsDefault")]

    def conditions(self, ctx):
        """None where the secret is not known yet (plan, before the distribution exists)."""
        out = [{"Field": "path-pattern", "PathPatternConfig": {"Values": [self.path]}}] if self.path else []
        if self.cdn:
            secret = origin_secret(ctx.dep(DISTRIBUTION))
            if secret is None:
                return None
            out.append({"Field": "http-header",
                        "HttpHeaderConfig": {"HttpHeaderName": ORIGIN_HEADER, "Values": [secret]}})
        return out

    def _what(self):
        return (f"path {self.path}" if self.path else "any path") + (f" with the {ORIGIN_HEADER} header"
                                                                     if self.cdn else "")

    def create(self, ctx):
        tags = ctx.tags(self.name)
        rule = ctx.retry("eventual-consistency", ctx.client("elbv2").create_rule,
                         ListenerArn=ctx.dep("https-listener").id, Priority=int(self.priority),
                         Conditions=self.conditions(ctx), Actions=forward(ctx.dep(self.target).id),
                         Tags=tags)["Rules"][0]
        return self.created(rule, tags)

    def update(self, ctx, resource, apply):
        changes = super().update(ctx, resource, apply)
        rule, elb = resource.raw, ctx.client("elbv2")
        differ = {}
        wanted = self.conditions(ctx)
        if wanted is not None and conditions_value(rule.get("Conditions", [])) != conditions_value(wanted):
            changes.append(f"set condition to {self._what()} "
                           f"(was {describe_conditions(rule.get('Conditions', []))})")
            differ["Conditions"] = wanted
        backend = ctx.dep(self.target)
        if backend is not None and actions_value(rule.get("Actions", [])) != actions_value(forward(backend.id)):
            changes.append(f"set action to {describe_actions(forward(backend.id))} "
                           f"(was {describe_actions(rule.get('Actions', []))})")
            differ["Actions"] = forward(backend.id)
        if apply and differ:
            elb.modify_rule(RuleArn=resource.id, **differ)
        if str(rule.get("Priority")) != self.priority:
            changes.append(f"set priority to {self.priority} (was {rule.get('Priority')})")
            if apply:
                elb.set_rule_priorities(RulePriorities=[{"RuleArn": resource.id, "Priority": int(self.priority)}])
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
        if c["Field"] == "http-header":
            header = c.get("HttpHeaderConfig", {})
            out.append((f"http-header {header.get('HttpHeaderName', '').lower()}",
                        tuple(sorted(header.get("Values", [])))))
            continue
        values = c.get("PathPatternConfig", {}).get("Values") if c["Field"] == "path-pattern" else None
        out.append((c["Field"], tuple(sorted(values or c.get("Values", [])))))
    return tuple(sorted(out))


def describe_conditions(conditions: list[dict]) -> str:
    """For plan and status: a header's values are CloudFront's secret, and never shown."""
    return ", ".join(f"{field} (secret)" if field.startswith("http-header") else f"{field} {' or '.join(values)}"
                     for field, values in conditions_value(conditions)) or "none"
