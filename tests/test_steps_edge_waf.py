"""The web application firewall (--waf) on moto with the strict fixture: the web ACL, its log
group and logging, its association with the load balancer; applied twice, deleted twice, found
again by tags, rules as WAF holds them, drift and option changes converged, a stale lock token
met, and the refusal to delete an ACL still associated."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from provisioner.shape.config import StackConfig
from provisioner.engine.errors import ConfigError

from stacks import ZONES, make_session, outcomes, tagged_leftovers

WAF = ["waf-log-group", "web-acl", "web-acl-association"]


def waf_config(**more):
    return StackConfig(zones=list(ZONES), waf=True, **more)


def web_acl(stack):
    waf = make_session(stack.strict).client("wafv2")
    arn = stack.state_file.read().resources["web-acl"]["id"]
    summary = next(s for s in waf.list_web_acls(Scope="REGIONAL")["WebACLs"] if s["ARN"] == arn)
    return waf, waf.get_web_acl(Name=summary["Name"], Scope="REGIONAL", Id=summary["Id"])


def test_apply_twice_then_delete_twice(make_stack, strict):
    stack = make_stack(config=waf_config())
    first = outcomes(stack.up(only=WAF))
    assert all(first[name] == "created" for name in WAF), first

    second = stack.up(only=WAF)
    assert set(outcomes(second).values()) == {"kept"}, [(r.name, r.outcome, r.detail) for r in second]
    assert stack.mutating_calls() == []

    down = stack.down(only=WAF)
    assert all(r.ok for r in down), [(r.name, r.outcome, r.detail) for r in down]
    assert all(outcomes(down)[name] == "deleted" for name in WAF)
    assert tagged_leftovers("stylesphere") == []
    # The association went first: WAF was never asked to delete an ACL still in use.
    assert [r for r in strict.refusals if r[2] == "order"] == []

    again = stack.down(only=WAF)
    assert set(outcomes(again).values()) == {"absent"}
    assert stack.mutating_calls() == []


def test_rules_logging_and_association_as_aws_holds_them(make_stack):
    stack = make_stack(config=waf_config(waf_rate_limit=2000, waf_block_countries=["DE", "FR"]))
    stack.up(only=WAF)
    waf, got = web_acl(stack)
    acl = got["WebACL"]
    assert acl["DefaultAction"] == {"Allow": {}}
    rules = {r["Name"]: r for r in acl["Rules"]}
    assert list(rules) == ["block-countries", "rate-limit", "AWSManagedRulesCommonRuleSet",
                           "AWSManagedRulesSQLiRuleSet", "AWSManagedRulesKnownBadInputsRuleSet"]
    assert [r["Priority"] for r in acl["Rules"]] == [0, 1, 2, 3, 4]
    assert rules["block-countries"]["Statement"]["GeoMatchStatement"]["CountryCodes"] == ["DE", "FR"]
    assert rules["block-countries"]["Action"] == {"Block": {}}
    rate = rules["rate-limit"]["Statement"]["RateBasedStatement"]
    assert (rate["Limit"], rate["AggregateKeyType"], rate["EvaluationWindowSec"]) == (2000, "IP", 300)
    for group in ("AWSManagedRulesCommonRuleSet", "AWSManagedRulesSQLiRuleSet", "AWSManagedRulesKnownBadInputsRuleSet"):
        statement = rules[group]["Statement"]["ManagedRuleGroupStatement"]
        assert (statement["VendorName"], statement["Name"]) == ("AWS", group)
        assert rules[group]["OverrideAction"] == {"None": {}}  # the group's own block actions apply
    assert acl["Description"].endswith(": 5 rules")  # what the price line counts

    logging = waf.get_logging_configuration(ResourceArn=acl["ARN"])["LoggingConfiguration"]
    assert logging["LogDestinationConfigs"] == ["arn:aws:logs:us-east-1:123456789012:log-group:aws-waf-logs-stylesphere"]
    logs = make_session(stack.strict).client("logs")
    [group] = logs.describe_log_groups(logGroupNamePrefix="aws-waf-logs-stylesphere")["logGroups"]
    assert group["retentionInDays"] == 30
    tags = logs.list_tags_log_group(logGroupName=group["logGroupName"])["tags"]
    assert tags["provision:stack"] == "stylesphere" and tags["provision:step"] == "waf-log-group"

    balancer = stack.state_file.read().resources["load-balancer"]["id"]
    assert waf.get_web_acl_for_resource(ResourceArn=balancer)["WebACL"]["ARN"] == acl["ARN"]


def test_found_again_by_tags_without_state(make_stack):
    stack = make_stack(config=waf_config())
    stack.up(only=WAF)
    stack.state_file.remove()
    results = outcomes(stack.up(only=WAF))
    assert all(results[name] == "kept" for name in WAF), results
    assert stack.mutating_calls() == []


def test_a_new_rate_limit_and_hand_made_drift_are_converged(make_stack):
    stack = make_stack(config=waf_config())
    stack.up(only=WAF)
    waf, got = web_acl(stack)
    acl = got["WebACL"]
    # Someone removes the managed rules in the console.
    waf.update_web_acl(Name=acl["Name"], Scope="REGIONAL", Id=acl["Id"], DefaultAction={"Allow": {}},
                       Rules=[r for r in acl["Rules"] if r["Name"] == "rate-limit"],
                       VisibilityConfig=acl["VisibilityConfig"], LockToken=got["LockToken"])
    waf.delete_logging_configuration(ResourceArn=acl["ARN"])
    plan = {r.name: r for r in stack.plan(only=WAF)}
    assert "set the rules" in plan["web-acl"].detail and "log requests to" in plan["web-acl"].detail
    assert stack.mutating_calls() == []

    results = {r.name: r for r in stack.up(config=waf_config(waf_rate_limit=500), only=WAF)}
    assert results["web-acl"].outcome == "updated"
    _, got = web_acl(stack)
    rules = {r["Name"]: r for r in got["WebACL"]["Rules"]}
    assert len(rules) == 4 and rules["rate-limit"]["Statement"]["RateBasedStatement"]["Limit"] == 500
    assert waf.get_logging_configuration(ResourceArn=acl["ARN"])["LoggingConfiguration"]["LogDestinationConfigs"]
    assert set(outcomes(stack.up(only=WAF)).values()) == {"kept"}


def test_a_stale_lock_token_is_read_again_and_the_update_made(make_stack):
    """Another change between the tool's read and its UpdateWebACL makes the token stale; WAF
    refuses (WAFOptimisticLockException) and the tool reads the ACL again and puts its rules."""
    stack = make_stack(config=waf_config())
    stack.up(only=WAF)
    waf, got = web_acl(stack)
    acl = got["WebACL"]
    raced = []

    def someone_else_changes_it_first(**_):
        if not raced:
            raced.append(1)
            current = waf.get_web_acl(Name=acl["Name"], Scope="REGIONAL", Id=acl["Id"])
            waf.update_web_acl(Name=acl["Name"], Scope="REGIONAL", Id=acl["Id"], DefaultAction={"Allow": {}},
                               Rules=current["WebACL"]["Rules"], Description="edited",
                               VisibilityConfig=acl["VisibilityConfig"], LockToken=current["LockToken"])

    stack.hooks.append(("before-call.wafv2.UpdateWebACL", someone_else_changes_it_first))
    results = {r.name: r for r in stack.up(config=waf_config(waf_rate_limit=700), only=WAF)}
    assert results["web-acl"].outcome == "updated", results["web-acl"].detail
    assert [op for _, op in stack.last_ctx.calls].count("UpdateWebACL") == 2
    _, got = web_acl(stack)
    rate = {r["Name"]: r for r in got["WebACL"]["Rules"]}["rate-limit"]["Statement"]["RateBasedStatement"]
    assert rate["Limit"] == 700


def test_strict_refuses_deleting_an_acl_still_associated(make_stack, strict):
    stack = make_stack(config=waf_config())
    stack.up(only=WAF)
    waf, got = web_acl(stack)
    with pytest.raises(ClientError) as refused:
        waf.delete_web_acl(Name=got["WebACL"]["Name"], Scope="REGIONAL", Id=got["WebACL"]["Id"],
                           LockToken=got["LockToken"])
    assert refused.value.response["Error"]["Code"] == "WAFAssociatedItemException"


def up_retiring(stack, config, only, retire):
    """`up` of the steps `only` need, and the removal of those of `retire` that `config` no longer has."""
    from provisioner.engine.engine import Engine
    from provisioner.engine.registry import plan_steps

    from stacks import closure

    engine = stack.engine(config=config, only=only)
    _, retired = plan_steps(config)
    return Engine(engine.ctx, engine.steps, engine.state, stack.state_file,
                  retired={n: s for n, s in retired.items() if n in retire}).up()


def test_turning_waf_off_removes_it(make_stack, strict):
    stack = make_stack(config=waf_config())
    stack.up(only=WAF)
    results = outcomes(up_retiring(stack, StackConfig(zones=list(ZONES)), ["load-balancer"], WAF))
    assert all(results[name] == "deleted" for name in WAF), results
    assert results["load-balancer"] == "kept"
    assert not [r for r in tagged_leftovers("stylesphere") if "waf" in r or "webacl" in r]
    assert [r for r in strict.refusals if r[2] == "order"] == []


@pytest.mark.parametrize("field,value,words", [
    ("waf_rate_limit", 5, "--rate-limit 5 must be 10 to"),
    ("waf_block_countries", ["de"], "'de' is not a country code"),
    ("waf_block_countries", ["DEU"], "'DEU' is not a country code"),
])
def test_bad_waf_options_are_refused(field, value, words):
    with pytest.raises(ConfigError, match=words):
        StackConfig(zones=list(ZONES), waf=True, **{field: value}).validate()
