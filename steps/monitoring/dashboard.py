"""The CloudWatch dashboard of the stack (--monitoring): the group's CPU, the load balancer's
requests and 5xx, the healthy hosts of both target groups, and the targets' response time (p95).

Dashboards are global to the account (not regional) and the API gives them no tags (PutDashboard
takes none). So the name is `<stack>-<region>` (two stacks of one name in two regions must not
share one), and the stack's tags are written into the dashboard itself, in a text widget
("provision-tags: `{...}`"). `list`, `cleanup` and `reap` read the body of each dashboard named
like a stack of their region (the `-<region>` suffix) and take the tags from there; a dashboard
without that line is never the tool's, whatever its name.

$3 a month per dashboard beyond the account's first 3, which are free (up to 50 metrics each):
the price line counts every dashboard at $3, and says so.
"""

import json
import re

from provisioner.account.pricing import HOURS_PER_MONTH
from provisioner.engine.context import Resource
from provisioner.engine.errors import ConfigError
from provisioner.engine.kinds import Iam, ItemTags, Listing, PriceKey, actions
from provisioner.engine.registry import Step, created, register
from provisioner.engine.retries import lookup

from steps.monitoring.metric_alarm import arn_suffix

DASHBOARD_ARN = "arn:{partition}:cloudwatch::{account}:dashboard/{stack}-*"
TAGS_LINE = "provision-tags: `{}`"
TAGS_RE = re.compile(r"provision-tags: `(\{.*?\})`")
GONE = frozenset({"ResourceNotFound"})


def dashboard_name(ctx) -> str:
    return f"{ctx.stack}-{ctx.region}"


def body_tags(body: str) -> dict:
    """The tags written into a dashboard's body, {} when it has none."""
    try:
        widgets = json.loads(body or "{}").get("widgets", [])
    except (ValueError, AttributeError):
        return {}
    for widget in widgets:
        match = TAGS_RE.search(str((widget.get("properties") or {}).get("markdown", "")))
        if match:
            try:
                tags = json.loads(match.group(1))
            except ValueError:
                return {}
            return {str(k): str(v) for k, v in tags.items()} if isinstance(tags, dict) else {}
    return {}


def _answer_tags(answer: dict) -> dict:
    return body_tags(answer.get("DashboardBody", ""))


def _pairs(tags: dict) -> list[dict]:
    return [{"Key": k, "Value": v} for k, v in tags.items()]


def _dashboard_month(products, region, instance_types):
    from provisioner.account.pricing import price_of

    return price_of(products("AmazonCloudWatch", regionCode=region, productFamily="Dashboard"), "DashboardsUsageHour")


DASHBOARD_MONTH = PriceKey("cloudwatch_dashboard_month", "CloudWatch dashboard", "month", _dashboard_month,
                           default=3.0)


def dashboard_charges(item, prices, region):
    # Counted as if beyond the account's free 3: whether it is depends on the account's other
    # dashboards, which are no stack's (and a sentence here would mark the figure unpriced).
    return [("CloudWatch dashboard ($3/month beyond an account's first 3)", 1, "dashboard",
             prices["cloudwatch_dashboard_month"] / HOURS_PER_MONTH)], []


def widgets(ctx) -> list[dict]:
    region = ctx.region
    group = ctx.config and f"{ctx.stack}-web"
    balancer = arn_suffix(getattr(ctx.dep("load-balancer"), "id", "") or "", "app/")
    groups = [arn_suffix(getattr(ctx.dep(f"{r}-target-group"), "id", "") or "", "targetgroup/")
              for r in ("frontend", "backend")]

    def graph(x, y, title, metrics, stat="Sum", width=12):
        return {"type": "metric", "x": x, "y": y, "width": width, "height": 6,
                "properties": {"title": title, "region": region, "stat": stat, "period": 60, "view": "timeSeries",
                               "metrics": metrics}}

    lb = ["LoadBalancer", balancer]
    tags = {t["Key"]: t["Value"] for t in ctx.tags("dashboard")}
    return [
        {"type": "text", "x": 0, "y": 0, "width": 24, "height": 2, "properties": {"markdown": (
            f"# Stack {ctx.stack} ({region})\nMade by provision; `provision down` deletes it.\n\n"
            + TAGS_LINE.format(json.dumps(tags, sort_keys=True)))}},
        graph(0, 2, "CPU (average of the group)",
              [["AWS/EC2", "CPUUtilization", "AutoScalingGroupName", group]], stat="Average"),
        graph(12, 2, "Requests", [["AWS/ApplicationELB", "RequestCount", *lb]]),
        graph(0, 8, "5xx answers", [["AWS/ApplicationELB", "HTTPCode_ELB_5XX_Count", *lb],
                                    ["AWS/ApplicationELB", "HTTPCode_Target_5XX_Count", *lb]]),
        graph(12, 8, "Healthy hosts", [["AWS/ApplicationELB", "HealthyHostCount", "TargetGroup", tg, *lb]
                                       for tg in groups], stat="Minimum"),
        graph(0, 14, "Target response time (p95, seconds)",
              [["AWS/ApplicationELB", "TargetResponseTime", *lb]], stat="p95", width=24),
    ]


def dashboard_body(ctx) -> str:
    return json.dumps({"start": "-PT3H", "widgets": widgets(ctx)}, sort_keys=True)


def _without_created_at(body: str) -> str:
    """The body to compare: the created-at tag is the creation's, kept as it was."""
    return re.sub(r'\\?"provision:created-at\\?": \\?"[^"\\]*\\?"', "", body or "")


@register
class Dashboard(Step):
    kind = "cloudwatch_dashboard"
    gone_codes = GONE
    aws_type = "AWS::CloudWatch::Dashboard"
    listing = Listing("cloudwatch_dashboard", "cloudwatch", "list_dashboards", "DashboardEntries", "DashboardName",
                      label="CloudWatch dashboards", tags=ItemTags("get_dashboard", "DashboardName", "DashboardBody",
                                                                   untagged_codes=GONE, parse=_answer_tags),
                      # Global: each region's scan reads only the ones named for its region.
                      candidate=lambda ctx, item: item.get("DashboardName", "").endswith(f"-{ctx.region}"),
                      belongs=lambda ctx, stack, name: name == f"{stack}-{ctx.region}",
                      price=dashboard_charges, price_keys=(DASHBOARD_MONTH,))
    iam = Iam(create=(actions("cloudwatch:PutDashboard", on=DASHBOARD_ARN),),
              read=(actions("cloudwatch:ListDashboards"), actions("cloudwatch:GetDashboard", on=DASHBOARD_ARN)),
              change=(actions("cloudwatch:PutDashboard", on=DASHBOARD_ARN),),
              delete=(actions("cloudwatch:DeleteDashboards", on=DASHBOARD_ARN),))

    def __init__(self):
        # It names the load balancer and target groups by id only: either may go first.
        super().__init__("dashboard", depends_on=(created("load-balancer", held=False),
                                                  created("frontend-target-group", held=False),
                                                  created("backend-target-group", held=False)))

    @classmethod
    def instances(cls, config):
        return [cls()] if config.monitoring else []

    # -- find --------------------------------------------------------------------------------
    def _read(self, ctx, name):
        got = lookup(ctx.client("cloudwatch").get_dashboard, DashboardName=name, gone=self.gone_codes)
        if got is None:
            return None, []
        return got, _pairs(body_tags(got.get("DashboardBody", "")))

    def find_all(self, ctx, known_id):
        for name in dict.fromkeys(n for n in (known_id, dashboard_name(ctx)) if n):
            got, tags = self._read(ctx, name)
            if got is None:
                continue
            if name == known_id:
                ctx.claim(self.name, name, tags, "CloudWatch dashboard")
            if ctx.is_ours(tags, self.name):
                return [Resource(id=name, attrs={"name": name}, raw={**got, "Tags": tags})]
        return []

    def check_name(self, ctx, known_id):
        got, tags = self._read(ctx, dashboard_name(ctx))
        if got is not None and not ctx.is_ours(tags, self.name):
            raise ConfigError(f"a CloudWatch dashboard named {dashboard_name(ctx)} exists and is not this stack's",
                              hint="delete or rename it, or use another --stack name")

    # -- create ------------------------------------------------------------------------------
    def create(self, ctx):
        body = dashboard_body(ctx)
        ctx.client("cloudwatch").put_dashboard(DashboardName=dashboard_name(ctx), DashboardBody=body)
        return Resource(id=dashboard_name(ctx), attrs={"name": dashboard_name(ctx)},
                        raw={"DashboardName": dashboard_name(ctx), "DashboardBody": body,
                             "Tags": _pairs(body_tags(body))})

    # -- converge ----------------------------------------------------------------------------
    def update(self, ctx, resource, apply):
        want = dashboard_body(ctx)
        have = resource.raw.get("DashboardBody", "")
        try:
            same = _without_created_at(json.dumps(json.loads(have), sort_keys=True)) == _without_created_at(want)
        except ValueError:
            same = False
        if same:
            return []
        if apply:
            ctx.client("cloudwatch").put_dashboard(DashboardName=resource.id, DashboardBody=want)
        return ["set the widgets and the stack's tags line"]

    # -- delete ------------------------------------------------------------------------------
    def delete(self, ctx, resource):
        ctx.client("cloudwatch").delete_dashboards(DashboardNames=[resource.id])

    def outputs(self, resource):
        return {"dashboard": resource.id}

    def describe(self, resource):
        return f"{resource.id}: CPU, requests, 5xx, healthy hosts, response time p95"
