"""The WAFv2 web ACL in front of the load balancer (--waf), and its logging to CloudWatch Logs.

Regional scope: it filters what reaches the load balancer. With --cdn the load balancer answers
only requests that carry CloudFront's secret header, so every visitor's request passes this ACL
whichever way it came in, and no second (us-east-1, CLOUDFRONT-scope) ACL is needed.
"""

import re

from provisioner.account.pricing import HOURS_PER_MONTH
from provisioner.engine.context import Resource
from provisioner.engine.errors import ConfigError
from provisioner.engine.kinds import Iam, ItemTags, Listing, PriceKey, UsageNote, actions
from provisioner.engine.registry import Step, created, register
from provisioner.engine.retries import lookup

from steps.edge.waf_log_group import log_group_arn

SCOPE = "REGIONAL"
WEB_ACL_ARN = "arn:{partition}:wafv2:{region}:{account}:regional/webacl/{stack}-web-acl/*"
# AWS's managed rule groups, in evaluation order: the OWASP-style common set, SQL injection,
# and requests known to be malicious (Log4Shell's JNDI lookups, ...). Free of extra charge
# beyond the rule price (these are not the paid Bot Control or Fraud groups).
MANAGED_RULE_GROUPS = ("AWSManagedRulesCommonRuleSet", "AWSManagedRulesSQLiRuleSet",
                       "AWSManagedRulesKnownBadInputsRuleSet")
# WAF counts a rate-based rule's requests over this window, in seconds.
RATE_WINDOW = 300
# The rule count is written into the description, which ListWebACLs returns: the price line reads
# it from there, without a GetWebACL per ACL.
DESCRIPTION = "provision stack {stack}: {rules} rules"
RULE_COUNT_RE = re.compile(r": (\d+) rules\Z")


def web_acl_name(ctx) -> str:
    return f"{ctx.stack}-web-acl"


def _visibility(name: str) -> dict:
    return {"SampledRequestsEnabled": True, "CloudWatchMetricsEnabled": True, "MetricName": name}


def wanted_rules(config) -> list[dict]:
    """The rules, as CreateWebACL and UpdateWebACL take them (and GetWebACL gives them back)."""
    rules = []
    priority = 0
    if config.waf_block_countries:
        rules.append({"Name": "block-countries", "Priority": priority,
                      "Statement": {"GeoMatchStatement": {"CountryCodes": list(config.waf_block_countries)}},
                      "Action": {"Block": {}}, "VisibilityConfig": _visibility("block-countries")})
        priority += 1
    # The rate limit before the managed groups: a flood is cut off before it costs rule evaluations.
    rules.append({"Name": "rate-limit", "Priority": priority,
                  "Statement": {"RateBasedStatement": {"Limit": config.waf_rate_limit, "AggregateKeyType": "IP",
                                                       "EvaluationWindowSec": RATE_WINDOW}},
                  "Action": {"Block": {}}, "VisibilityConfig": _visibility("rate-limit")})
    for group in MANAGED_RULE_GROUPS:
        priority += 1
        rules.append({"Name": group, "Priority": priority,
                      "Statement": {"ManagedRuleGroupStatement": {"VendorName": "AWS", "Name": group}},
                      # The group's own actions (block) apply; "Count" here would only count.
                      "OverrideAction": {"None": {}}, "VisibilityConfig": _visibility(group)})
    return rules


def _comparable(rules: list[dict]) -> list[tuple]:
    """Rules as a comparable value: the fields the tool sets, whatever defaults AWS adds."""
    out = []
    for rule in rules:
        statement = rule.get("Statement", {})
        if "GeoMatchStatement" in statement:
            what = ("geo", tuple(statement["GeoMatchStatement"].get("CountryCodes", [])))
        elif "RateBasedStatement" in statement:
            rate = statement["RateBasedStatement"]
            what = ("rate", int(rate.get("Limit", 0)), rate.get("AggregateKeyType"),
                    int(rate.get("EvaluationWindowSec", RATE_WINDOW)))
        elif "ManagedRuleGroupStatement" in statement:
            group = statement["ManagedRuleGroupStatement"]
            what = ("managed", group.get("VendorName"), group.get("Name"))
        else:
            what = ("other", repr(sorted(statement)))
        action = sorted(rule.get("Action") or rule.get("OverrideAction") or {})
        out.append((rule.get("Name"), int(rule.get("Priority", -1)), what, tuple(action)))
    return sorted(out, key=lambda r: r[1])


def _web_acl_products(products, region):
    return products("awswaf", regionCode=region)


def _per_month(usage: str):
    def fetch(products, region, instance_types):
        from provisioner.account.pricing import price_of

        return price_of(_web_acl_products(products, region), usage)
    return fetch


WEB_ACL_MONTH = PriceKey("waf_web_acl_month", "WAF web ACL", "month", _per_month("WebACL"), default=5.0)
WAF_RULE_MONTH = PriceKey("waf_rule_month", "WAF rule", "month", _per_month("Rule"), default=1.0)


def waf_requests(products, region):
    from provisioner.account.pricing import price_of

    per_million = price_of(_web_acl_products(products, region), "Request")
    return None if per_million is None else f"${per_million * 1e6:g} per million requests (WAF)"


def web_acl_charges(item, prices, region):
    rows = [("WAF web ACL", 1, "web ACL", prices["waf_web_acl_month"] / HOURS_PER_MONTH)]
    rules = (getattr(item, "detail", None) or {}).get("rules")
    if isinstance(rules, int) and rules > 0:
        return rows + [("WAF rule", rules, "rule", prices["waf_rule_month"] / HOURS_PER_MONTH)], []
    return rows, [f"web ACL {getattr(item, 'id', '')}: its rules are not counted (their number is unknown)"]


def _detail(item):
    match = RULE_COUNT_RE.search(item.get("Description") or "")
    return {"name": item.get("Name"), "rules": int(match.group(1)) if match else None}


@register
class WebAcl(Step):
    """AWS's managed rules, a rate limit per address, an optional geo block; logs to CloudWatch."""

    kind = "web_acl"
    gone_codes = frozenset({"WAFNonexistentItemException"})
    aws_type = "AWS::WAFv2::WebACL"
    listing = Listing("web_acl", "wafv2", "list_web_acls", "WebACLs", "ARN", label="WAF web ACLs",
                      params={"Scope": SCOPE}, tags=ItemTags("list_tags_for_resource", "ResourceARN",
                                                             "TagInfoForResource.TagList"),
                      detail=_detail, price=web_acl_charges, price_keys=(WEB_ACL_MONTH, WAF_RULE_MONTH),
                      usage_notes=(UsageNote("WAF requests", waf_requests),))
    iam = Iam(create=(actions("wafv2:CreateWebACL", "wafv2:TagResource", "wafv2:PutLoggingConfiguration",
                              on=WEB_ACL_ARN),
                      # What WAF itself needs of the caller to deliver to a log group.
                      actions("logs:CreateLogDelivery", "logs:PutResourcePolicy", "logs:DescribeResourcePolicies"),
                      actions("wafv2:CreateWebACL", "wafv2:ListWebACLs",
                              on="arn:{partition}:wafv2:{region}:{account}:regional/managedruleset/*/*")),
              read=(actions("wafv2:ListWebACLs", "wafv2:GetWebACL", "wafv2:ListTagsForResource",
                            "wafv2:GetLoggingConfiguration"),),
              change=(actions("wafv2:UpdateWebACL", "wafv2:TagResource", "wafv2:PutLoggingConfiguration",
                              on=WEB_ACL_ARN),
                      actions("logs:CreateLogDelivery", "logs:PutResourcePolicy", "logs:DescribeResourcePolicies")),
              delete=(actions("wafv2:DeleteWebACL", "wafv2:DeleteLoggingConfiguration", on=WEB_ACL_ARN),
                      actions("logs:DeleteLogDelivery")))

    def __init__(self):
        super().__init__("web-acl", depends_on=(created("waf-log-group"),))

    @classmethod
    def instances(cls, config):
        return [cls()] if config.waf else []

    # -- find --------------------------------------------------------------------------------
    def find_all(self, ctx, known_id):
        waf = ctx.client("wafv2")
        summaries = _all_web_acls(waf)
        if known_id:
            mine = [s for s in summaries if s["ARN"] == known_id]
            if mine:
                tags = self._tags(ctx, known_id)
                ctx.claim(self.name, known_id, tags, "web ACL")
                return [r for r in (self._get(ctx, mine[0], tags),) if r is not None]
        found = []
        for summary in (s for s in summaries if s["Name"] == web_acl_name(ctx)):
            tags = self._tags(ctx, summary["ARN"])
            if ctx.owns(tags, self.name):
                resource = self._get(ctx, summary, tags)
                if resource is not None:
                    found.append(resource)
        return found

    def check_name(self, ctx, known_id):
        for summary in (s for s in _all_web_acls(ctx.client("wafv2")) if s["Name"] == web_acl_name(ctx)):
            if summary["ARN"] != known_id and not ctx.is_ours(self._tags(ctx, summary["ARN"]), self.name):
                raise ConfigError(f"a WAF web ACL named {summary['Name']} exists in {ctx.region} and is not this "
                                  "stack's", hint="delete it or use another --stack name")

    @staticmethod
    def _tags(ctx, arn) -> list[dict]:
        answer = lookup(ctx.client("wafv2").list_tags_for_resource, ResourceARN=arn)
        return ((answer or {}).get("TagInfoForResource") or {}).get("TagList", [])

    def _get(self, ctx, summary, tags) -> Resource | None:
        got = lookup(ctx.client("wafv2").get_web_acl, Name=summary["Name"], Scope=SCOPE, Id=summary["Id"],
                     gone=self.gone_codes)
        if got is None:
            return None
        return self._resource(got["WebACL"], got["LockToken"], tags)

    @staticmethod
    def _resource(acl, lock_token, tags) -> Resource:
        return Resource(id=acl["ARN"], attrs={"arn": acl["ARN"], "name": acl["Name"], "id": acl["Id"]},
                        raw={**acl, "LockToken": lock_token, "Tags": tags})

    # -- create ------------------------------------------------------------------------------
    def create(self, ctx):
        rules = wanted_rules(ctx.config)
        summary = ctx.client("wafv2").create_web_acl(
            Name=web_acl_name(ctx), Scope=SCOPE, DefaultAction={"Allow": {}}, Rules=rules,
            Description=DESCRIPTION.format(stack=ctx.stack, rules=len(rules)),
            VisibilityConfig=_visibility(web_acl_name(ctx)), Tags=ctx.tags(self.name))["Summary"]
        resource = self._get(ctx, summary, ctx.tags(self.name))
        if resource is None:  # not readable yet: what the create said
            resource = self._resource({**summary, "Rules": rules}, summary["LockToken"], ctx.tags(self.name))
        self._converge_logging(ctx, resource, apply=True)
        return resource

    # -- converge ----------------------------------------------------------------------------
    def update(self, ctx, resource, apply):
        waf = ctx.client("wafv2")
        changes = ctx.converge_tags(resource.raw.get("Tags", []), self.name, apply,
                                    lambda missing: waf.tag_resource(ResourceARN=resource.id, Tags=missing))
        wanted = wanted_rules(ctx.config)
        if _comparable(resource.raw.get("Rules", [])) != _comparable(wanted):
            have = {r.get("Name") for r in resource.raw.get("Rules", [])}
            changes.append(f"set the rules ({', '.join(r['Name'] for r in wanted)}; "
                           f"was {', '.join(sorted(have)) or 'none'})")
            if apply:
                self._put_rules(ctx, resource, wanted)
        changes += self._converge_logging(ctx, resource, apply)
        return changes

    def _put_rules(self, ctx, resource, rules):
        """UpdateWebACL with the lock token of the last read. WAF refuses a token someone else's
        change made stale (WAFOptimisticLockException): read again, and put again."""
        waf = ctx.client("wafv2")
        attrs = resource.attrs

        def put(token):
            return waf.update_web_acl(
                Name=attrs["name"], Scope=SCOPE, Id=attrs["id"], DefaultAction={"Allow": {}}, Rules=rules,
                Description=DESCRIPTION.format(stack=ctx.stack, rules=len(rules)),
                VisibilityConfig=_visibility(attrs["name"]), LockToken=token)

        resource.raw["LockToken"] = with_fresh_lock(ctx, resource, put)["NextLockToken"]
        resource.raw["Rules"] = rules

    def _converge_logging(self, ctx, resource, apply) -> list[str]:
        waf = ctx.client("wafv2")
        destination = log_group_arn(ctx)
        have = lookup(waf.get_logging_configuration, ResourceArn=resource.id, gone=self.gone_codes)
        configured = (have or {}).get("LoggingConfiguration", {}).get("LogDestinationConfigs", [])
        if configured == [destination]:
            return []
        if apply:
            # A log group made moments ago can be unknown to WAF for a while.
            ctx.retry("eventual-consistency", waf.put_logging_configuration, LoggingConfiguration={
                "ResourceArn": resource.id, "LogDestinationConfigs": [destination]})
        return [f"log requests to {destination.rsplit(':', 1)[-1]}"]

    # -- delete ------------------------------------------------------------------------------
    def delete(self, ctx, resource):
        waf = ctx.client("wafv2")
        # The association with the load balancer is its own step, deleted first (the reversed
        # graph): WAF refuses to delete an ACL still associated (WAFAssociatedItemException).
        lookup(waf.delete_logging_configuration, ResourceArn=resource.id, gone=self.gone_codes)
        with_fresh_lock(ctx, resource, lambda token: waf.delete_web_acl(
            Name=resource.attrs["name"], Scope=SCOPE, Id=resource.attrs["id"], LockToken=token))

    def outputs(self, resource):
        return {"web_acl_arn": resource.id}

    def describe(self, resource):
        rules = resource.raw.get("Rules", [])
        return f"{len(rules)} rules: {', '.join(r.get('Name', '?') for r in rules)}"


def with_fresh_lock(ctx, resource, call):
    """call(lock token), with the token last read; when WAF says it is stale (another change came
    in between), read the ACL's current token and call once more. Once: a second refusal means
    someone is changing the ACL right now, and the next `up` converges again."""
    from botocore.exceptions import ClientError

    from provisioner.engine.retries import error_code

    try:
        return call(resource.raw["LockToken"])
    except ClientError as e:
        if error_code(e) != "WAFOptimisticLockException":
            raise
    ctx.activity("the web ACL changed since it was read (stale lock token); reading it again")
    got = ctx.client("wafv2").get_web_acl(Name=resource.attrs["name"], Scope=SCOPE, Id=resource.attrs["id"])
    resource.raw["LockToken"] = got["LockToken"]
    return call(got["LockToken"])


def _all_web_acls(waf) -> list[dict]:
    """ListWebACLs has no paginator in botocore: NextMarker by hand."""
    found, marker = [], None
    while True:
        page = waf.list_web_acls(Scope=SCOPE, **({"NextMarker": marker} if marker else {}))
        found += page.get("WebACLs", [])
        marker = page.get("NextMarker")
        if not marker or not page.get("WebACLs"):
            return found
