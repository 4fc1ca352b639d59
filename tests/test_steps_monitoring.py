"""Monitoring (--monitoring, --alert-email) on moto with the strict fixture: the alert topic, its
email subscription (pending until confirmed, which SNS will not let be unsubscribed), the alarms
with the issue's thresholds and periods, the step scaling policies, the dashboard (its body
validated as AWS does, its tags in its body); applied twice, deleted twice, seen by the inventory."""

from __future__ import annotations

import json

import pytest
from botocore.exceptions import ClientError

from provisioner.account.inventory import scan
from provisioner.engine.context import RunContext
from provisioner.engine.errors import ConfigError
from provisioner.shape.config import StackConfig

from stacks import ACCOUNT, REGION, ZONES, make_session, outcomes

BASE = ["alert-topic", "alb-5xx-alarm", "frontend-unhealthy-alarm", "backend-unhealthy-alarm", "cpu-high-alarm",
        "cpu-low-alarm", "scale-out-policy", "scale-in-policy", "dashboard"]
EMAIL = "ops@example.com"
MONITORING_KINDS = {"sns_topic", "cloudwatch_alarm", "cloudwatch_dashboard"}


def monitoring_config(**more):
    return StackConfig(zones=list(ZONES), monitoring=True, **more)


def clients(stack):
    session = make_session(stack.strict)
    return session.client("cloudwatch"), session.client("sns"), session.client("autoscaling")


def alarms(stack) -> dict[str, dict]:
    cloudwatch, _, _ = clients(stack)
    found = cloudwatch.describe_alarms(AlarmNamePrefix="stylesphere-")["MetricAlarms"]
    return {a["AlarmName"].removeprefix("stylesphere-"): a for a in found}


def inventory(strict):
    ctx = RunContext(stack="whoever", region=REGION, config=StackConfig(),
                     session_factory=lambda: make_session(strict))
    ctx.account = ACCOUNT
    return [f for f in scan(ctx) if f.kind in MONITORING_KINDS | {"scaling_policy"}]


def test_apply_twice_then_delete_twice_with_a_pending_subscription(make_stack, strict):
    steps = BASE + ["alert-subscription"]
    stack = make_stack(config=monitoring_config(alert_email=EMAIL))
    results = stack.up(only=steps)
    first = outcomes(results)
    assert all(first[name] == "created" for name in steps), [(r.name, r.outcome, r.detail) for r in results
                                                             if r.name in steps and r.outcome != "created"]

    second = stack.up(only=steps)
    assert set(outcomes(second).values()) == {"kept"}, [(r.name, r.outcome, r.detail) for r in second]
    assert stack.mutating_calls() == []

    status = {r.name: r.detail for r in stack.status(only=steps)}
    assert "pending confirmation" in status["alert-subscription"]

    down = stack.down(only=steps)
    assert all(r.ok for r in down), [(r.name, r.outcome, r.detail) for r in down]
    assert outcomes(down)["alert-topic"] == "deleted"
    # The pending subscription was left to the topic's deletion: SNS was never asked to
    # unsubscribe it (it refuses), and nothing of the tier remains.
    assert [r for r in strict.refusals if r[0] == "Unsubscribe"] == []
    assert inventory(strict) == []
    assert alarms(stack) == {}

    again = stack.down(only=steps)
    assert set(outcomes(again).values()) <= {"absent"}, outcomes(again)
    assert stack.mutating_calls() == []


def test_a_confirmed_subscription_is_unsubscribed_and_status_says_confirmed(make_stack, strict):
    steps = ["alert-topic", "alert-subscription"]
    stack = make_stack(config=monitoring_config(alert_email=EMAIL))
    stack.up(only=steps)
    strict.confirm(EMAIL)
    status = {r.name: r.detail for r in stack.status(only=steps)}
    assert status["alert-subscription"] == f"{EMAIL}: confirmed"
    down = stack.down(only=steps)
    assert all(r.ok for r in down), [(r.name, r.outcome, r.detail) for r in down]
    assert outcomes(down)["alert-subscription"] == "deleted"


def test_the_unconfirmed_subscription_cannot_be_unsubscribed(make_stack, strict):
    """The strict rule itself: what `down` must never try."""
    stack = make_stack(config=monitoring_config(alert_email=EMAIL))
    stack.up(only=["alert-topic", "alert-subscription"])
    _, sns, _ = clients(stack)
    topic = stack.state_file.read().resources["alert-topic"]["id"]
    arn = sns.subscribe(TopicArn=topic, Protocol="email", Endpoint=EMAIL, ReturnSubscriptionArn=True)["SubscriptionArn"]
    assert sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"][0]["SubscriptionArn"] == "PendingConfirmation"
    with pytest.raises(ClientError) as e:
        sns.unsubscribe(SubscriptionArn=arn)
    assert e.value.response["Error"]["Code"] == "InvalidParameter"


def test_alarm_thresholds_periods_and_actions(make_stack):
    stack = make_stack(config=monitoring_config())
    stack.up(only=BASE)
    found = alarms(stack)
    assert set(found) == {"cpu-high-alarm", "cpu-low-alarm", "alb-5xx-alarm", "frontend-unhealthy-alarm",
                          "backend-unhealthy-alarm"}
    state = stack.state_file.read().resources
    topic = state["alert-topic"]["id"]
    _, _, autoscaling = clients(stack)
    policies = {p["PolicyName"]: p for p in autoscaling.describe_policies(
        AutoScalingGroupName="stylesphere-web")["ScalingPolicies"]}

    high = found["cpu-high-alarm"]
    assert (high["Namespace"], high["MetricName"], high["Statistic"]) == ("AWS/EC2", "CPUUtilization", "Average")
    assert high["Dimensions"] == [{"Name": "AutoScalingGroupName", "Value": "stylesphere-web"}]
    assert (high["Period"], high["EvaluationPeriods"], high["Threshold"]) == (60, 2, 70.0)  # 2 minutes
    assert high["ComparisonOperator"] == "GreaterThanThreshold"
    assert sorted(high["AlarmActions"]) == sorted([topic, policies["stylesphere-scale-out-policy"]["PolicyARN"]])
    assert high["OKActions"] == [topic]

    low = found["cpu-low-alarm"]
    assert (low["Period"], low["EvaluationPeriods"], low["Threshold"]) == (60, 5, 30.0)  # 5 minutes
    assert low["ComparisonOperator"] == "LessThanThreshold"
    assert low["AlarmActions"] == [policies["stylesphere-scale-in-policy"]["PolicyARN"]] and low["OKActions"] == []

    errors = found["alb-5xx-alarm"]
    assert (errors["EvaluationPeriods"], errors["Threshold"]) == (1, 100.0)
    stats = [m["MetricStat"] for m in errors["Metrics"] if m.get("MetricStat")]
    assert sorted(s["Metric"]["MetricName"] for s in stats) == ["HTTPCode_ELB_5XX_Count", "HTTPCode_Target_5XX_Count"]
    balancer = state["load-balancer"]["id"]
    assert all(s["Period"] == 60 and s["Stat"] == "Sum" for s in stats)
    assert all(s["Metric"]["Dimensions"] == [{"Name": "LoadBalancer", "Value": balancer[balancer.index("app/"):]}]
               for s in stats)

    for role in ("frontend", "backend"):
        unhealthy = found[f"{role}-unhealthy-alarm"]
        assert unhealthy["MetricName"] == "UnHealthyHostCount"
        assert (unhealthy["Period"], unhealthy["EvaluationPeriods"], unhealthy["Threshold"]) == (60, 5, 0.0)
        group = state[f"{role}-target-group"]["id"]
        assert {"Name": "TargetGroup", "Value": group[group.index("targetgroup/"):]} in unhealthy["Dimensions"]
    assert all(a["AlarmActions"][:1] == [topic] for n, a in found.items() if n != "cpu-low-alarm")

    out = policies["stylesphere-scale-out-policy"]
    assert (out["PolicyType"], out["AdjustmentType"], out["EstimatedInstanceWarmup"]) == \
        ("StepScaling", "ChangeInCapacity", 300)
    assert out["StepAdjustments"][0]["ScalingAdjustment"] == 1
    assert policies["stylesphere-scale-in-policy"]["StepAdjustments"][0]["ScalingAdjustment"] == -1

    cloudwatch, _, _ = clients(stack)
    tags = {t["Key"]: t["Value"] for t in cloudwatch.list_tags_for_resource(ResourceARN=high["AlarmArn"])["Tags"]}
    assert tags["provision:stack"] == "stylesphere" and tags["provision:step"] == "cpu-high-alarm"


@pytest.mark.parametrize("engine, db_class, limit", [("postgres", "db.t4g.micro", 112), ("mysql", "db.t4g.small", 170)])
def test_with_a_database_its_cpu_and_connections_alarms(make_stack, engine, db_class, limit):
    steps = ["database-cpu-alarm", "database-connections-alarm"]
    stack = make_stack(config=monitoring_config(database=engine, db_class=db_class))
    results = stack.up(only=steps)
    first = outcomes(results)
    assert all(first[name] == "created" for name in steps), [(r.name, r.outcome, r.detail) for r in results
                                                             if r.name in steps and r.outcome != "created"]
    found = alarms(stack)
    cpu, connections = found["database-cpu-alarm"], found["database-connections-alarm"]
    dimensions = [{"Name": "DBInstanceIdentifier", "Value": "stylesphere-database"}]
    assert (cpu["Namespace"], cpu["Dimensions"], cpu["Threshold"], cpu["EvaluationPeriods"]) == \
        ("AWS/RDS", dimensions, 75.0, 5)
    assert connections["MetricName"] == "DatabaseConnections"
    assert connections["Threshold"] == float(int(limit * 0.8))
    assert set(outcomes(stack.up(only=steps)).values()) == {"kept"}


def test_a_changed_alarm_is_put_back(make_stack):
    stack = make_stack(config=monitoring_config())
    stack.up(only=BASE)
    cloudwatch, _, _ = clients(stack)
    high = alarms(stack)["cpu-high-alarm"]
    cloudwatch.put_metric_alarm(AlarmName=high["AlarmName"], Namespace="AWS/EC2", MetricName="CPUUtilization",
                                Statistic="Average", Period=300, EvaluationPeriods=1, Threshold=95,
                                ComparisonOperator="GreaterThanThreshold", Dimensions=high["Dimensions"])
    again = {r.name: r for r in stack.up(only=BASE)}
    assert again["cpu-high-alarm"].outcome == "updated", again["cpu-high-alarm"].detail
    fixed = alarms(stack)["cpu-high-alarm"]
    assert (fixed["Period"], fixed["EvaluationPeriods"], fixed["Threshold"]) == (60, 2, 70.0)


def test_the_dashboard_carries_the_stack_and_its_widgets(make_stack):
    stack = make_stack(config=monitoring_config())
    stack.up(only=["dashboard"])
    cloudwatch, _, _ = clients(stack)
    body = json.loads(cloudwatch.get_dashboard(DashboardName=f"stylesphere-{REGION}")["DashboardBody"])
    titles = [w["properties"].get("title") for w in body["widgets"] if w["type"] == "metric"]
    assert titles == ["CPU (average of the group)", "Requests", "5xx answers", "Healthy hosts",
                      "Target response time (p95, seconds)"]
    assert any(w["properties"].get("stat") == "p95" for w in body["widgets"])
    assert set(outcomes(stack.up(only=["dashboard"])).values()) == {"kept"}


def test_a_dashboard_body_aws_refuses(make_stack, strict):
    """The strict rule: moto takes any JSON; AWS validates the widgets."""
    stack = make_stack()
    cloudwatch, _, _ = clients(stack)
    body = {"widgets": [{"type": "metric", "x": 0, "y": 0, "width": 6, "height": 6,
                         "properties": {"metrics": [["AWS/EC2", "CPUUtilization"]]}}]}
    with pytest.raises(ClientError) as e:
        cloudwatch.put_dashboard(DashboardName="x", DashboardBody=json.dumps(body))
    assert e.value.response["Error"]["Code"] == "InvalidParameterInput"


def test_someone_elses_dashboard_or_alarm_of_the_name_is_refused(make_stack):
    stack = make_stack(config=monitoring_config())
    cloudwatch, _, _ = clients(stack)
    cloudwatch.put_dashboard(DashboardName=f"stylesphere-{REGION}", DashboardBody='{"widgets": []}')
    with pytest.raises(ConfigError, match="dashboard named stylesphere-us-east-1 exists"):
        stack.up(only=["dashboard"])


def test_the_inventory_sees_each_kind(make_stack, strict):
    stack = make_stack(config=monitoring_config(alert_email=EMAIL))
    stack.up(only=BASE + ["alert-subscription"])
    # A look-alike dashboard without the tags line is never the tool's.
    clients(stack)[0].put_dashboard(DashboardName=f"other-{REGION}", DashboardBody='{"widgets": []}')
    found = inventory(strict)
    kinds = {}
    for f in found:
        assert f.stack == "stylesphere", f
        kinds[f.kind] = kinds.get(f.kind, 0) + 1
    assert kinds == {"sns_topic": 1, "cloudwatch_alarm": 5, "cloudwatch_dashboard": 1}
    assert {f.step for f in found if f.kind == "cloudwatch_dashboard"} == {"dashboard"}


def test_prices_alarm_metrics_and_the_dashboard():
    from types import SimpleNamespace

    from steps.monitoring.dashboard import dashboard_charges
    from steps.monitoring.metric_alarm import alarm_charges

    prices = {"cloudwatch_alarm_metric_month": 0.10, "cloudwatch_dashboard_month": 3.0}
    rows, _ = alarm_charges(SimpleNamespace(id="a", detail={"metrics": 2}), prices, REGION)
    assert rows[0][1] == 2 and abs(rows[0][1] * rows[0][3] * 730 - 0.20) < 0.01
    rows, notes = dashboard_charges(SimpleNamespace(id="d", detail={}), prices, REGION)
    assert abs(rows[0][3] * 730 - 3.0) < 0.05 and "first 3" in rows[0][0] and notes == []


@pytest.mark.parametrize("more, words", [
    ({"alert_email": "not an address"}, "is not an email address"),
    ({"alert_email": "Ops <ops@example.com>"}, "is not an email address"),
])
def test_a_bad_alert_email_is_refused(more, words):
    with pytest.raises(ConfigError, match=words):
        monitoring_config(**more).validate()


def test_an_alert_email_without_monitoring_is_refused():
    with pytest.raises(ConfigError, match="without --monitoring"):
        StackConfig(zones=list(ZONES), alert_email=EMAIL).validate()
    StackConfig(zones=list(ZONES), monitoring=True).validate()  # monitoring without an email is fine
