"""The CDN (--cdn) on moto with the strict fixture: the distribution and its Origin Access Control,
the bucket that only this distribution may read, the load balancer that answers 403 without
CloudFront's secret header; applied twice, deleted twice (disable, wait, delete with the ETag),
found again by tags, the secret kept out of state, outputs and plan, and turned off again."""

from __future__ import annotations

import fnmatch
import json

import pytest
from botocore.exceptions import ClientError

from provisioner.shape.config import StackConfig

from stacks import ZONES, make_session, outcomes, tagged_leftovers

CDN = ["cdn-frontend-rule", "api-routing-rule", "assets-bucket"]
CDN_STEPS = ["origin-access-control", "cloudfront-distribution", "cdn-frontend-rule"]


def cdn_config(**more):
    return StackConfig(zones=list(ZONES), **{"cdn": True, **more})


def distribution(stack):
    cloudfront = make_session(stack.strict).client("cloudfront")
    distribution_id = stack.state_file.read().resources["cloudfront-distribution"]["id"]
    return cloudfront, cloudfront.get_distribution(Id=distribution_id)


def secret_of(got) -> str:
    [alb] = [o for o in got["Distribution"]["DistributionConfig"]["Origins"]["Items"] if o["Id"] == "load-balancer"]
    [header] = alb["CustomHeaders"]["Items"]
    assert header["HeaderName"] == "X-Origin-Verify"
    return header["HeaderValue"]


def answer(elb, listener_arn, path: str, headers: dict) -> dict:
    """What an ALB listener does with a request, as AWS evaluates it: the rules in priority
    order, the first whose every condition matches, else the default action."""
    rules = elb.describe_rules(ListenerArn=listener_arn)["Rules"]
    lowered = {k.lower(): v for k, v in headers.items()}

    def matches(condition):
        if condition["Field"] == "path-pattern":
            return any(fnmatch.fnmatchcase(path, p) for p in condition["PathPatternConfig"]["Values"])
        if condition["Field"] == "http-header":
            config = condition["HttpHeaderConfig"]
            value = lowered.get(config["HttpHeaderName"].lower())
            return value is not None and any(fnmatch.fnmatchcase(value, v) for v in config["Values"])
        raise AssertionError(f"a condition this evaluator does not know: {condition}")

    for rule in sorted((r for r in rules if not r["IsDefault"]), key=lambda r: int(r["Priority"])):
        if all(matches(c) for c in rule["Conditions"]):
            return rule["Actions"][0]
    default = next(r for r in rules if r["IsDefault"])
    return default["Actions"][0]


def test_apply_twice_then_delete_twice(make_stack, strict):
    stack = make_stack(config=cdn_config())
    first = outcomes(stack.up(only=CDN))
    assert all(first[name] == "created" for name in CDN_STEPS + ["assets-bucket"]), first

    second = stack.up(only=CDN)
    assert set(outcomes(second).values()) == {"kept"}, [(r.name, r.outcome, r.detail) for r in second]
    assert stack.mutating_calls() == []

    outputs = stack.state_file.read().outputs
    assert outputs["url"] == f"https://{outputs['cdn_domain_name']}"
    assert outputs["images_base_url"] == f"https://{outputs['cdn_domain_name']}/images/"

    down = stack.down(only=CDN)
    assert all(r.ok for r in down), [(r.name, r.outcome, r.detail) for r in down]
    assert all(outcomes(down)[name] == "deleted" for name in CDN_STEPS)
    assert tagged_leftovers("stylesphere") == []
    cloudfront = make_session(strict).client("cloudfront")
    assert not (cloudfront.list_distributions()["DistributionList"].get("Items") or [])
    assert not (cloudfront.list_origin_access_controls()["OriginAccessControlList"].get("Items") or [])
    # Disabled, waited for, deleted with the current ETag: never refused.
    assert [r for r in strict.refusals if r[2] == "order"] == []
    calls = [op for _, op in stack.last_ctx.calls]
    assert calls.index("UpdateDistribution") < calls.index("DeleteDistribution")

    again = stack.down(only=CDN)
    assert set(outcomes(again).values()) == {"absent"}
    assert stack.mutating_calls() == []


def test_distribution_as_cloudfront_holds_it(make_stack, strict):
    stack = make_stack(config=cdn_config())
    stack.up(only=CDN)
    _, got = distribution(stack)
    config = got["Distribution"]["DistributionConfig"]
    assert config["Enabled"] is True and config["PriceClass"] == "PriceClass_100"
    origins = {o["Id"]: o for o in config["Origins"]["Items"]}
    bucket = stack.state_file.read().resources["assets-bucket"]["id"]
    assert origins["assets-bucket"]["DomainName"] == f"{bucket}.s3.us-east-1.amazonaws.com"
    oac = stack.state_file.read().resources["origin-access-control"]["id"]
    assert origins["assets-bucket"]["OriginAccessControlId"] == oac
    alb = stack.state_file.read().resources["load-balancer"]["attrs"]["dns_name"]
    assert origins["load-balancer"]["DomainName"] == alb
    assert origins["load-balancer"]["CustomOriginConfig"]["OriginProtocolPolicy"] == "https-only"
    assert len(secret_of(got)) >= 40
    behaviors = {b["PathPattern"]: b for b in config["CacheBehaviors"]["Items"]}
    assert behaviors["/images/*"]["TargetOriginId"] == "assets-bucket"
    assert behaviors["/images/*"]["CachePolicyId"] == "658327ea-f89d-4fab-a63d-7e88639e58f6"
    assert behaviors["/api/*"]["TargetOriginId"] == "load-balancer"
    assert behaviors["/api/*"]["CachePolicyId"] == "4135ea2d-6df8-44a3-9df3-4b5a84be39ad"
    assert behaviors["/api/*"]["OriginRequestPolicyId"] == "b689b0a8-53d0-40ab-baf2-68738e2966ac"
    assert "POST" in behaviors["/api/*"]["AllowedMethods"]["Items"]
    default = config["DefaultCacheBehavior"]
    assert default["TargetOriginId"] == "load-balancer"
    assert {b["ViewerProtocolPolicy"] for b in [default, *behaviors.values()]} == {"redirect-to-https"}
    tags = {t["Key"]: t["Value"] for t in make_session(strict).client("cloudfront").list_tags_for_resource(
        Resource=got["Distribution"]["ARN"])["Tags"]["Items"]}
    assert tags["provision:stack"] == "stylesphere" and tags["provision:step"] == "cloudfront-distribution"


def test_only_this_distribution_reads_the_bucket_which_is_private(make_stack):
    stack = make_stack(config=cdn_config())
    stack.up(only=CDN)
    _, got = distribution(stack)
    s3 = make_session(stack.strict).client("s3")
    bucket = stack.state_file.read().resources["assets-bucket"]["id"]
    block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert all(block.values()) and len(block) == 4
    statements = json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])["Statement"]
    reads = [s for s in statements if s["Effect"] == "Allow"]
    assert reads == [{"Sid": "CloudFrontReadsProductImages", "Effect": "Allow",
                      "Principal": {"Service": "cloudfront.amazonaws.com"}, "Action": "s3:GetObject",
                      "Resource": f"arn:aws:s3:::{bucket}/images/*",
                      "Condition": {"StringEquals": {"AWS:SourceArn": got["Distribution"]["ARN"]}}}]
    assert not [s for s in statements if s.get("Principal") == "*" and s["Effect"] == "Allow"]


def test_the_load_balancer_answers_403_without_cloudfronts_header(make_stack):
    stack = make_stack(config=cdn_config())
    stack.up(only=CDN)
    _, got = distribution(stack)
    secret = secret_of(got)
    elb = make_session(stack.strict).client("elbv2")
    resources = stack.state_file.read().resources
    listener = resources["https-listener"]["id"]
    frontend, backend = resources["frontend-target-group"]["id"], resources["backend-target-group"]["id"]

    for path in ("/", "/api/products", "/images/x.jpg"):
        for headers in ({}, {"X-Origin-Verify": "guess"}, {"X-Origin-Verify": secret[:-1]}, {"X-Other": secret}):
            action = answer(elb, listener, path, headers)
            assert action["Type"] == "fixed-response", (path, headers)
            assert action["FixedResponseConfig"]["StatusCode"] == "403"
    assert answer(elb, listener, "/api/products", {"x-origin-verify": secret})["TargetGroupArn"] == backend
    assert answer(elb, listener, "/", {"X-Origin-Verify": secret})["TargetGroupArn"] == frontend
    assert answer(elb, listener, "/shop/jacket", {"X-Origin-Verify": secret})["TargetGroupArn"] == frontend


def test_the_secret_is_in_no_state_output_or_plan_line(make_stack):
    stack = make_stack(config=cdn_config())
    stack.up(only=CDN)
    _, got = distribution(stack)
    secret = secret_of(got)
    assert secret not in stack.state_file.path.read_text()
    # A rule changed by hand is put back; the plan says so without the value.
    elb = make_session(stack.strict).client("elbv2")
    rule = stack.state_file.read().resources["cdn-frontend-rule"]["id"]
    elb.modify_rule(RuleArn=rule, Conditions=[{"Field": "http-header", "HttpHeaderConfig": {
        "HttpHeaderName": "X-Origin-Verify", "Values": ["*"]}}])
    plan = stack.plan(only=CDN) + stack.status(only=CDN)
    assert any("X-Origin-Verify" in r.detail for r in plan)
    assert not [r for r in plan if secret in (r.detail or "")]
    results = {r.name: r for r in stack.up(only=CDN)}
    assert results["cdn-frontend-rule"].outcome == "updated"
    assert secret not in results["cdn-frontend-rule"].detail
    assert secret not in stack.state_file.path.read_text()


def test_found_again_by_tags_without_state(make_stack):
    stack = make_stack(config=cdn_config())
    stack.up(only=CDN)
    stack.state_file.remove()
    results = outcomes(stack.up(only=CDN))
    assert all(v == "kept" for v in results.values()), results
    assert stack.mutating_calls() == []


def test_drift_of_the_distribution_is_put_back_with_its_etag(make_stack, strict):
    stack = make_stack(config=cdn_config())
    stack.up(only=CDN)
    cloudfront, got = distribution(stack)
    secret = secret_of(got)
    config = cloudfront.get_distribution_config(Id=got["Distribution"]["Id"])
    changed = {**config["DistributionConfig"], "PriceClass": "PriceClass_All"}
    cloudfront.update_distribution(Id=got["Distribution"]["Id"], IfMatch=config["ETag"], DistributionConfig=changed)
    results = {r.name: r for r in stack.up(only=CDN)}
    assert results["cloudfront-distribution"].outcome == "updated"
    assert "price class PriceClass_100" in results["cloudfront-distribution"].detail
    _, got = distribution(stack)
    assert got["Distribution"]["DistributionConfig"]["PriceClass"] == "PriceClass_100"
    assert secret_of(got) == secret  # the rules keep matching
    assert [r for r in strict.refusals if r[2] == "order"] == []


def test_strict_refuses_what_cloudfront_refuses(make_stack, strict):
    stack = make_stack(config=cdn_config())
    stack.up(only=CDN)
    cloudfront, got = distribution(stack)
    distribution_id = got["Distribution"]["Id"]
    with pytest.raises(ClientError) as refused:
        cloudfront.delete_distribution(Id=distribution_id, IfMatch=got["ETag"])
    assert refused.value.response["Error"]["Code"] == "DistributionNotDisabled"   # enabled
    config = cloudfront.get_distribution_config(Id=distribution_id)
    with pytest.raises(ClientError) as refused:
        cloudfront.update_distribution(Id=distribution_id, IfMatch="STALE",
                                       DistributionConfig={**config["DistributionConfig"], "Enabled": False})
    assert refused.value.response["Error"]["Code"] == "PreconditionFailed"
    disabled = cloudfront.update_distribution(Id=distribution_id, IfMatch=config["ETag"],
                                              DistributionConfig={**config["DistributionConfig"], "Enabled": False})
    assert disabled["ETag"] != config["ETag"]  # every change has its own ETag
    assert cloudfront.get_distribution(Id=distribution_id)["Distribution"]["Status"] == "InProgress"
    with pytest.raises(ClientError) as refused:
        cloudfront.delete_distribution(Id=distribution_id, IfMatch=disabled["ETag"])
    assert refused.value.response["Error"]["Code"] == "DistributionNotDisabled"   # not yet deployed
    strict.distribution_deploying.clear()
    with pytest.raises(ClientError) as refused:
        cloudfront.delete_distribution(Id=distribution_id, IfMatch=config["ETag"])
    assert refused.value.response["Error"]["Code"] == "PreconditionFailed"
    cloudfront.delete_distribution(Id=distribution_id, IfMatch=disabled["ETag"])


def test_turning_cdn_off_makes_the_bucket_public_again_and_removes_the_distribution(make_stack, strict):
    from test_steps_edge_waf import up_retiring

    stack = make_stack(config=cdn_config())
    stack.up(only=CDN)
    plain = StackConfig(zones=list(ZONES))
    results = outcomes(up_retiring(stack, plain, ["api-routing-rule", "assets-bucket"], CDN_STEPS))
    assert all(results[name] == "deleted" for name in CDN_STEPS), results
    assert results["assets-bucket"] == "updated" and results["https-listener"] == "updated"
    resources = stack.state_file.read().resources
    bucket = resources["assets-bucket"]
    assert bucket["attrs"]["images_base_url"] == f"https://{bucket['id']}.s3.us-east-1.amazonaws.com/images/"
    s3 = make_session(strict).client("s3")
    statements = json.loads(s3.get_bucket_policy(Bucket=bucket["id"])["Policy"])["Statement"]
    assert any(s.get("Principal") == "*" and s["Effect"] == "Allow" for s in statements)
    elb = make_session(strict).client("elbv2")
    assert answer(elb, resources["https-listener"]["id"], "/", {})["Type"] == "forward"
    assert [r for r in strict.refusals if r[2] == "order"] == []


def test_the_distribution_is_waited_for_by_nothing_and_holds_nothing_but_its_origin_access_control():
    """It needs only the load balancer's DNS name; the bucket and the rules need only its ARN and
    secret. So `up` starts them as soon as it is created (its deployment takes minutes), and
    `down` disables it while the rest goes: it holds the Origin Access Control alone."""
    from provisioner.engine.registry import READY_NODE, build_steps, dependency_graph, up_graph

    steps = build_steps(cdn_config())
    up = up_graph(steps)
    for name in ("assets-bucket", "api-routing-rule", "cdn-frontend-rule"):
        assert "cloudfront-distribution" in up[name] and READY_NODE.format("cloudfront-distribution") not in up[name]
    assert "load-balancer" in up["cloudfront-distribution"]
    assert READY_NODE.format("load-balancer") not in up["cloudfront-distribution"]
    down = dependency_graph(steps, reverse=True)
    assert down["cloudfront-distribution"] == set()
    assert "cloudfront-distribution" not in down["load-balancer"]
    assert "cloudfront-distribution" in down["origin-access-control"]


def test_cdn_is_refused_on_real_aws_before_anything_is_built():
    """CloudFront would check the load balancer's certificate against its *.elb.amazonaws.com
    name, which no certificate of the stack matches: every page would be a 502."""
    from types import SimpleNamespace

    from provisioner.commands.runner import check_cdn_origin
    from provisioner.engine.errors import ConfigError

    def run(sandbox, cdn):
        return SimpleNamespace(opts=SimpleNamespace(sandbox=sandbox), config=cdn_config(cdn=cdn))

    with pytest.raises(ConfigError, match="--cdn needs a certificate on the load balancer that CloudFront trusts"):
        check_cdn_origin(run(sandbox=False, cdn=True))
    check_cdn_origin(run(sandbox=True, cdn=True))
    check_cdn_origin(run(sandbox=False, cdn=False))
