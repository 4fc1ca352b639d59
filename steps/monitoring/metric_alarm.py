"""The CloudWatch alarms (--monitoring), each named `<stack>-<step>` and notifying the alert topic
when it goes into ALARM and back to OK:

- cpu-high-alarm: the group's average CPU above 70% for 2 minutes (two 1-minute periods); it also
  runs the scale-out policy;
- cpu-low-alarm: below 30% for 5 minutes; runs the scale-in policy only (a quiet shop is no news:
  it would mail every night);
- alb-5xx-alarm: the load balancer's own 5xx plus its targets' 5xx above 100 in a minute (metric
  math: one alarm, billed as two alarm metrics);
- frontend-unhealthy-alarm, backend-unhealthy-alarm: an unhealthy host in either target group for
  5 minutes;
- with a database: database-cpu-alarm (above 75% for 5 minutes) and database-connections-alarm
  (above 80% of the class's max_connections for 5 minutes).

PutMetricAlarm creates or replaces by name, and alarm names are the account's per region: a
name held by an alarm without this stack's tag is refused before `up` starts (NamedStep). Its
Tags are applied at creation only ("ignored" on an update, says the API): tags converge with
TagResource. Missing data is "notBreaching": a stack with no traffic is not in alarm.
"""

from provisioner.account.pricing import HOURS_PER_MONTH, price_of
from provisioner.engine.context import Resource
from provisioner.engine.kinds import Iam, ItemTags, Listing, PriceKey, actions
from provisioner.engine.registry import NamedStep, created, register
from provisioner.engine.retries import lookup

ALARM_ARN = "arn:{partition}:cloudwatch:{region}:{account}:alarm:{stack}-*"
MINUTE = 60

# max_connections of RDS's default parameter groups, by class, for the engines the tool builds:
# PostgreSQL LEAST({DBInstanceClassMemory/9531392}, 5000), MySQL and MariaDB
# {DBInstanceClassMemory/12582880} (RDS user guide, "Maximum number of database connections").
# DBInstanceClassMemory is the class's memory less what RDS and the OS keep, so these figures from
# the nominal memory are a little above the real maximum: 80% of them stays a warning before the
# database refuses connections.
CLASS_MEMORY_GIB = {"micro": 1, "small": 2, "medium": 4, "large": 8, "xlarge": 16, "2xlarge": 32, "4xlarge": 64}
DIVISOR = {"postgres": 9531392, "mysql": 12582880, "mariadb": 12582880}
CONNECTIONS_SHARE = 0.8


def max_connections(engine: str, db_class: str) -> int | None:
    """The default parameter group's max_connections for the class (None: a size not tabled)."""
    gib = CLASS_MEMORY_GIB.get(db_class.rsplit(".", 1)[-1])
    if gib is None or engine not in DIVISOR:
        return None
    value = gib * 1024 ** 3 // DIVISOR[engine]
    return min(value, 5000) if engine == "postgres" else value


def arn_suffix(arn: str, marker: str) -> str:
    """What CloudWatch names an ELB resource by: the ARN from "app/..." or "targetgroup/..."."""
    return arn[arn.index(marker):] if arn and marker in arn else ""


def _simple(namespace, metric, dimensions, stat, periods, threshold, operator):
    return {"Namespace": namespace, "MetricName": metric, "Dimensions": dimensions, "Statistic": stat,
            "Period": MINUTE, "EvaluationPeriods": periods, "DatapointsToAlarm": periods, "Threshold": threshold,
            "ComparisonOperator": operator}


class Alarm:
    """One alarm of the stack: its step, what it watches and its actions."""

    def __init__(self, step, why, notify=True, scaling=None, deps=()):
        self.step, self.why, self.notify, self.scaling, self.deps = step, why, notify, scaling, deps


ALARMS = (
    Alarm("cpu-high-alarm", "the group's average CPU above 70% for 2 minutes", scaling="scale-out-policy",
          deps=("auto-scaling-group",)),
    Alarm("cpu-low-alarm", "the group's average CPU below 30% for 5 minutes", notify=False,
          scaling="scale-in-policy", deps=("auto-scaling-group",)),
    Alarm("alb-5xx-alarm", "more than 100 5xx answers (load balancer and targets) in a minute",
          deps=("load-balancer",)),
    Alarm("frontend-unhealthy-alarm", "an unhealthy storefront instance for 5 minutes",
          deps=("load-balancer", "frontend-target-group")),
    Alarm("backend-unhealthy-alarm", "an unhealthy API instance for 5 minutes",
          deps=("load-balancer", "backend-target-group")),
    Alarm("database-cpu-alarm", "the database's CPU above 75% for 5 minutes", deps=("database",)),
    Alarm("database-connections-alarm", "database connections above 80% of the class's max_connections for "
                                        "5 minutes", deps=("database",)),
)
DATABASE_ALARMS = ("database-cpu-alarm", "database-connections-alarm")


def alarm_definition(ctx, step: str) -> dict:
    """PutMetricAlarm's parameters for the alarm (without name, actions and tags)."""
    config = ctx.config

    def dep_id(name, key="id"):
        dep = ctx.dep(name)
        return "" if dep is None else (dep.id if key == "id" else dep.attrs.get(key, ""))

    group = [{"Name": "AutoScalingGroupName", "Value": f"{ctx.stack}-web"}]
    balancer = arn_suffix(dep_id("load-balancer"), "app/")
    if step == "cpu-high-alarm":
        return _simple("AWS/EC2", "CPUUtilization", group, "Average", 2, 70.0, "GreaterThanThreshold")
    if step == "cpu-low-alarm":
        return _simple("AWS/EC2", "CPUUtilization", group, "Average", 5, 30.0, "LessThanThreshold")
    if step == "alb-5xx-alarm":
        def metric(mid, name):
            return {"Id": mid, "ReturnData": False, "MetricStat": {
                "Metric": {"Namespace": "AWS/ApplicationELB", "MetricName": name,
                           "Dimensions": [{"Name": "LoadBalancer", "Value": balancer}]},
                "Period": MINUTE, "Stat": "Sum"}}
        return {"Metrics": [metric("elb", "HTTPCode_ELB_5XX_Count"), metric("target", "HTTPCode_Target_5XX_Count"),
                            {"Id": "errors", "Expression": "FILL(elb, 0) + FILL(target, 0)",
                             "Label": "5xx a minute", "ReturnData": True}],
                "EvaluationPeriods": 1, "DatapointsToAlarm": 1, "Threshold": 100.0,
                "ComparisonOperator": "GreaterThanThreshold"}
    if step in ("frontend-unhealthy-alarm", "backend-unhealthy-alarm"):
        role = step.split("-")[0]
        target_group = arn_suffix(dep_id(f"{role}-target-group"), "targetgroup/")
        return _simple("AWS/ApplicationELB", "UnHealthyHostCount",
                       [{"Name": "TargetGroup", "Value": target_group}, {"Name": "LoadBalancer", "Value": balancer}],
                       "Maximum", 5, 0.0, "GreaterThanThreshold")
    database = [{"Name": "DBInstanceIdentifier", "Value": f"{ctx.stack}-database"}]
    if step == "database-cpu-alarm":
        return _simple("AWS/RDS", "CPUUtilization", database, "Average", 5, 75.0, "GreaterThanThreshold")
    if step == "database-connections-alarm":
        limit = max_connections(config.database, config.db_class)
        # An untabled size: the smallest class's figure, a warning too early rather than too late.
        limit = limit if limit is not None else max_connections(config.database, "db.t4g.micro")
        return _simple("AWS/RDS", "DatabaseConnections", database, "Maximum", 5,
                       float(int(limit * CONNECTIONS_SHARE)), "GreaterThanThreshold")
    raise ValueError(step)


def _alarm_month(products, region, instance_types):
    return price_of(products("AmazonCloudWatch", regionCode=region, productFamily="Alarm"), "CW:AlarmMonitorUsage")


ALARM_METRIC_MONTH = PriceKey("cloudwatch_alarm_metric_month", "CloudWatch standard alarm metric", "month",
                              _alarm_month, default=0.10)


def alarm_charges(item, prices, region):
    """$0.10 a month per metric a standard-resolution alarm evaluates (a metric-math alarm pays for
    each metric of its expression)."""
    metrics = (getattr(item, "detail", None) or {}).get("metrics") or 1
    return [("CloudWatch alarm metric", metrics, "alarm metric",
             prices["cloudwatch_alarm_metric_month"] / HOURS_PER_MONTH)], []


def _detail(item):
    stats = [m for m in item.get("Metrics") or [] if m.get("MetricStat")]
    return {"metrics": len(stats) or 1, "state": item.get("StateValue")}


def _comparable(item: dict) -> dict:
    keys = ("Namespace", "MetricName", "Statistic", "Period", "EvaluationPeriods", "DatapointsToAlarm", "Threshold",
            "ComparisonOperator", "TreatMissingData")
    out = {k: item.get(k) for k in keys if item.get(k) is not None}
    out["Dimensions"] = sorted((d["Name"], d["Value"]) for d in item.get("Dimensions") or [])
    out["Metrics"] = repr([{k: m.get(k) for k in ("Id", "Expression", "MetricStat", "ReturnData")}
                           for m in item.get("Metrics") or []])
    out["AlarmActions"] = sorted(item.get("AlarmActions") or [])
    out["OKActions"] = sorted(item.get("OKActions") or [])
    if "Threshold" in out:
        out["Threshold"] = float(out["Threshold"])
    if out.get("DatapointsToAlarm") is None:
        out["DatapointsToAlarm"] = out.get("EvaluationPeriods")
    return out


@register
class MetricAlarm(NamedStep):
    kind = "cloudwatch_alarm"
    what = "CloudWatch alarm"
    gone_codes = frozenset({"ResourceNotFound"})
    aws_type = "AWS::CloudWatch::Alarm"
    listing = Listing("cloudwatch_alarm", "cloudwatch", "describe_alarms", "MetricAlarms", "AlarmArn",
                      label="CloudWatch alarms", params={"AlarmTypes": ["MetricAlarm"]},
                      tags=ItemTags("list_tags_for_resource", "ResourceARN", "Tags"),
                      detail=_detail, price=alarm_charges, price_keys=(ALARM_METRIC_MONTH,))
    iam = Iam(create=(actions("cloudwatch:PutMetricAlarm", "cloudwatch:TagResource", on=ALARM_ARN),),
              read=(actions("cloudwatch:DescribeAlarms"), actions("cloudwatch:ListTagsForResource", on=ALARM_ARN)),
              change=(actions("cloudwatch:PutMetricAlarm", "cloudwatch:TagResource", on=ALARM_ARN),),
              delete=(actions("cloudwatch:DeleteAlarms", on=ALARM_ARN),))

    def __init__(self, alarm: Alarm):
        self.alarm = alarm
        # The ids it names (the load balancer's, a target group's, a policy's ARN) are copied in:
        # CloudWatch lets either go first, so `down` is not ordered by them. The topic is held:
        # the alarms go before it, and none is left notifying a topic that is gone.
        deps = [created("alert-topic")] + [created(d, held=False) for d in alarm.deps]
        if alarm.scaling:
            deps.append(created(alarm.scaling, held=False))
        super().__init__(alarm.step, depends_on=deps)

    @classmethod
    def instances(cls, config):
        if not config.monitoring:
            return []
        return [cls(a) for a in ALARMS if a.step not in DATABASE_ALARMS or config.database != "none"]

    # -- find --------------------------------------------------------------------------------
    def resource_name(self, ctx):
        return f"{ctx.stack}-{self.name}"

    def read(self, ctx, name):
        cloudwatch = ctx.client("cloudwatch")
        alarms = cloudwatch.describe_alarms(AlarmNames=[name], AlarmTypes=["MetricAlarm"]).get("MetricAlarms", [])
        if not alarms:
            return None, []
        tags = (lookup(cloudwatch.list_tags_for_resource, ResourceARN=alarms[0]["AlarmArn"], gone=self.gone_codes)
                or {}).get("Tags", [])
        return alarms[0], tags

    @staticmethod
    def to_resource(item, tags):
        return Resource(id=item["AlarmName"], attrs={"arn": item.get("AlarmArn"), "name": item["AlarmName"]},
                        raw={**item, "Tags": tags})

    # -- what it should be -------------------------------------------------------------------
    def wanted(self, ctx) -> dict:
        topic = ctx.dep("alert-topic")
        topic_arn = [topic.id] if topic and self.alarm.notify else []
        policy = ctx.dep(self.alarm.scaling) if self.alarm.scaling else None
        policy_arn = [policy.attrs["arn"]] if policy is not None and policy.attrs.get("arn") else []
        return {**alarm_definition(ctx, self.name), "AlarmDescription": f"{ctx.stack}: {self.alarm.why}",
                "ActionsEnabled": True, "AlarmActions": topic_arn + policy_arn, "OKActions": topic_arn,
                "TreatMissingData": "notBreaching"}

    def _put(self, ctx, tags=None):
        extra = {"Tags": tags} if tags else {}
        ctx.client("cloudwatch").put_metric_alarm(AlarmName=self.resource_name(ctx), **self.wanted(ctx), **extra)

    # -- create ------------------------------------------------------------------------------
    def create(self, ctx):
        self._put(ctx, ctx.tags(self.name))
        item, tags = self.read(ctx, self.resource_name(ctx))
        if item is None:  # not listed yet: what was put
            item, tags = {"AlarmName": self.resource_name(ctx), **self.wanted(ctx)}, ctx.tags(self.name)
        return self.to_resource(item, tags)

    # -- converge ----------------------------------------------------------------------------
    def update(self, ctx, resource, apply):
        changes = ctx.converge_tags(resource.raw.get("Tags", []), self.name, apply, lambda missing: ctx.client(
            "cloudwatch").tag_resource(ResourceARN=resource.attrs["arn"], Tags=missing))
        want, have = _comparable(self.wanted(ctx)), _comparable(resource.raw)
        differ = sorted(k for k in want if want[k] != have.get(k))
        if differ:
            changes.append(f"set {', '.join(differ)} ({self.alarm.why})")
            if apply:
                self._put(ctx)
        return changes

    # -- delete ------------------------------------------------------------------------------
    def delete(self, ctx, resource):
        ctx.client("cloudwatch").delete_alarms(AlarmNames=[resource.id])

    def outputs(self, resource):
        return {}

    def describe(self, resource):
        return f"{self.alarm.why}: {resource.raw.get('StateValue', 'INSUFFICIENT_DATA')}"
