"""The HTTPS listener and the /api/* rule (with the stack's own certificate step), on moto with
the strict fixture: values checked as AWS holds them, applied and deleted twice, found by tags,
drift fixed, and the certificate released the way ACM does it (in use for a while after the
listener is gone)."""

from __future__ import annotations

import pytest

from stacks import make_session, outcomes, tagged_leftovers
from test_steps_edge import EDGE_HTTP, edge, resource_id

EDGE = [*EDGE_HTTP, "certificate", "https-listener", "api-routing-rule"]
SSL_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"


def elbv2(stack):
    return make_session(stack.strict).client("elbv2")


def group_port(elb, arn):
    return elb.describe_target_groups(TargetGroupArns=[arn])["TargetGroups"][0]["Port"]


def path_patterns(rule):
    [condition] = rule["Conditions"]
    return condition.get("PathPatternConfig", {}).get("Values") or condition["Values"]


def test_apply_twice_then_delete_twice(make_stack, strict):
    stack = make_stack()
    # ACM counts the deleted listener until the first refusal, however slow the machine.
    strict.delays.certificate_release = 60

    def released_after_a_refusal(**_):
        if ("DeleteCertificate", "ResourceInUseException", "lingering") in strict.refusals:
            strict.delays.certificate_release = 0

    stack.hooks.append(("before-call.acm.DeleteCertificate", released_after_a_refusal))
    first = edge(stack.up(only=EDGE), EDGE)
    assert {r.outcome for r in first.values()} == {"created"}, [(r.name, r.outcome, r.detail) for r in first.values()]

    second = stack.up(only=EDGE)
    assert set(outcomes(second).values()) == {"kept"}, [(r.name, r.outcome, r.detail) for r in second]
    assert stack.mutating_calls() == []

    results = stack.down(only=EDGE)
    assert all(r.ok for r in results), [(r.name, r.outcome, r.detail) for r in results]
    assert {r.outcome for r in edge(results, EDGE).values()} == {"deleted"}
    assert tagged_leftovers("stylesphere") == []
    # ACM still counted the deleted listener for a while: refused, waited out, deleted.
    assert ("DeleteCertificate", "ResourceInUseException", "lingering") in strict.refusals
    assert [r for r in strict.refusals if r[2] == "order"] == []

    again = stack.down(only=EDGE)
    assert set(outcomes(again).values()) == {"absent"}
    assert stack.mutating_calls() == []


def test_listener_rules_by_value(make_stack):
    stack = make_stack()
    stack.up(only=EDGE)
    elb = elbv2(stack)
    balancer = resource_id(stack, "load-balancer")

    https = elb.describe_listeners(ListenerArns=[resource_id(stack, "https-listener")])["Listeners"][0]
    assert (https["Protocol"], https["Port"], https["LoadBalancerArn"]) == ("HTTPS", 443, balancer)
    assert https["SslPolicy"] == SSL_POLICY
    assert [c["CertificateArn"] for c in https["Certificates"]] == [resource_id(stack, "certificate")]
    [default] = https["DefaultActions"]
    assert default["Type"] == "forward" and group_port(elb, default["TargetGroupArn"]) == 3000

    rules = elb.describe_rules(ListenerArn=https["ListenerArn"])["Rules"]
    [api] = [r for r in rules if not r["IsDefault"]]
    assert api["RuleArn"] == resource_id(stack, "api-routing-rule")
    assert api["Priority"] == "10"
    assert [c["Field"] for c in api["Conditions"]] == ["path-pattern"]
    assert path_patterns(api) == ["/api/*"]
    [action] = api["Actions"]
    assert action["Type"] == "forward" and group_port(elb, action["TargetGroupArn"]) == 5000
    tags = {t["Key"]: t["Value"] for t in elb.describe_tags(ResourceArns=[api["RuleArn"]])["TagDescriptions"][0]["Tags"]}
    assert tags["provision:step"] == "api-routing-rule"

    http = elb.describe_listeners(ListenerArns=[resource_id(stack, "http-listener")])["Listeners"][0]
    [redirect] = http["DefaultActions"]
    assert redirect["Type"] == "redirect"
    assert (redirect["RedirectConfig"]["Protocol"], redirect["RedirectConfig"]["Port"],
            redirect["RedirectConfig"]["StatusCode"]) == ("HTTPS", "443", "HTTP_301")

    status = {r.name: r.detail for r in stack.status(only=EDGE)}
    assert "forward to stylesphere-frontend" in status["https-listener"] and SSL_POLICY in status["https-listener"]
    assert status["api-routing-rule"] == "path-pattern /api/* -> forward to stylesphere-backend (priority 10)"


def test_found_again_by_tags_without_state(make_stack):
    stack = make_stack()
    stack.up(only=EDGE)
    listeners = {s: resource_id(stack, s) for s in ("https-listener", "http-listener", "api-routing-rule")}
    stack.state_file.remove()
    # Looked for before their dependencies are (tagged steps), through the load balancer's name.
    status = {r.name: r for r in stack.status(only=EDGE)}
    assert {s: status[s].resource_id for s in listeners} == listeners
    results = edge(stack.up(only=EDGE), EDGE)
    assert {r.outcome for r in results.values()} == {"kept"}, [(r.name, r.outcome, r.detail) for r in results.values()]
    assert stack.mutating_calls() == []
    stack.state_file.remove()
    assert all(r.ok for r in stack.down(only=EDGE))
    assert tagged_leftovers("stylesphere") == []


def test_drift_is_reported_by_plan_and_fixed_by_up(make_stack):
    stack = make_stack()
    stack.up(only=EDGE)
    elb = elbv2(stack)
    https, rule = resource_id(stack, "https-listener"), resource_id(stack, "api-routing-rule")
    backend = resource_id(stack, "backend-target-group")
    # Someone weakens the TLS policy, sends everything to the backend, and re-routes the rule.
    elb.modify_listener(ListenerArn=https, SslPolicy="ELBSecurityPolicy-2016-08",
                        DefaultActions=[{"Type": "forward", "TargetGroupArn": backend}])
    elb.modify_rule(RuleArn=rule, Conditions=[{"Field": "path-pattern", "Values": ["/v2/*"]}])
    elb.set_rule_priorities(RulePriorities=[{"RuleArn": rule, "Priority": 20}])

    plan = edge(stack.plan(only=EDGE), EDGE)
    assert stack.mutating_calls() == []
    assert plan["https-listener"].outcome == "update"
    assert any(SSL_POLICY in c for c in plan["https-listener"].changes), plan["https-listener"].changes
    assert any("forward to stylesphere-frontend" in c for c in plan["https-listener"].changes)
    assert plan["api-routing-rule"].outcome == "update"
    assert any("/api/*" in c and "/v2/*" in c for c in plan["api-routing-rule"].changes), plan["api-routing-rule"].changes
    assert any("priority" in c for c in plan["api-routing-rule"].changes)

    fixed = edge(stack.up(only=EDGE), EDGE)
    assert fixed["https-listener"].outcome == fixed["api-routing-rule"].outcome == "updated"
    listener = elb.describe_listeners(ListenerArns=[https])["Listeners"][0]
    assert listener["SslPolicy"] == SSL_POLICY
    assert group_port(elb, listener["DefaultActions"][0]["TargetGroupArn"]) == 3000
    live = elb.describe_rules(RuleArns=[rule])["Rules"][0]
    assert live["Priority"] == "10" and path_patterns(live) == ["/api/*"]
    assert set(outcomes(stack.plan(only=EDGE)).values()) == {"no change"}


def test_strict_rules_for_certificates(make_stack, strict):
    stack = make_stack()
    stack.up(only=EDGE)
    session = make_session(strict)
    acm, elb = session.client("acm"), session.client("elbv2")
    certificate = resource_id(stack, "certificate")
    balancer = resource_id(stack, "load-balancer")
    assert acm.describe_certificate(CertificateArn=certificate)["Certificate"]["InUseBy"] == [balancer]

    with pytest.raises(Exception, match="ResourceInUseException"):
        acm.delete_certificate(CertificateArn=certificate)
    assert strict.refusals[-1] == ("DeleteCertificate", "ResourceInUseException", "order")

    strict.delays.certificate_release = 60
    elb.delete_listener(ListenerArn=resource_id(stack, "https-listener"))
    assert acm.describe_certificate(CertificateArn=certificate)["Certificate"]["InUseBy"] == [balancer]
    with pytest.raises(Exception, match="ResourceInUseException"):
        acm.delete_certificate(CertificateArn=certificate)
    assert strict.refusals[-1] == ("DeleteCertificate", "ResourceInUseException", "lingering")
    strict.delays.certificate_release = 0
    assert acm.describe_certificate(CertificateArn=certificate)["Certificate"]["InUseBy"] == []


class CrashBefore:
    """The process dies just before the first call of this operation (every later call fails)."""

    def __init__(self, operation: str):
        self.operation, self.crashed = operation, False

    def __call__(self, model, **_):
        from provisioner.engine.errors import Interrupted

        if self.crashed or model.name == self.operation:
            self.crashed = True
            raise Interrupted()


# Each a moment where a resource exists but is not finished: a group without its deregistration
# delay, an ALB still provisioning without its attributes, a listener without its rule.
@pytest.mark.parametrize("operation", ["ModifyTargetGroupAttributes", "ModifyLoadBalancerAttributes",
                                       "CreateListener", "CreateRule"])
def test_crash_mid_edge_then_resume_and_down(make_stack, strict, operation):
    from stacks import count_tagged

    strict.delays.alb_create = 0.2
    crash = CrashBefore(operation)
    make_stack(hooks=[("before-call", crash)]).up(only=EDGE)
    assert crash.crashed

    resumed = make_stack()
    results = resumed.up(only=EDGE)
    assert all(r.ok for r in results), [(r.name, r.outcome, r.detail) for r in results]
    assert all(n == 1 for n in count_tagged("stylesphere").values()), count_tagged("stylesphere")
    assert set(outcomes(resumed.up(only=EDGE)).values()) == {"kept"}

    assert all(r.ok for r in resumed.down(only=EDGE))
    assert tagged_leftovers("stylesphere") == []
    assert [r for r in strict.refusals if r[2] == "order"] == []
