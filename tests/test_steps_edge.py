"""The edge tier on moto with the strict fixture: target groups, the load balancer, the HTTP
listener; applied twice, deleted twice, found again by tags, drift reported and fixed, values
checked as AWS holds them, and the strict rules (provisioning, lingering interfaces) met.

The HTTPS listener and the /api/* rule need the certificate step: see test_steps_edge_https.py."""

from __future__ import annotations

import time

import pytest

from stacks import count_tagged, make_session, outcomes, tagged_leftovers

TARGET_GROUPS = ["frontend-target-group", "backend-target-group"]
EDGE_HTTP = [*TARGET_GROUPS, "load-balancer", "http-listener"]


def edge(results, names=EDGE_HTTP):
    return {r.name: r for r in results if r.name in names}


def clients(stack):
    session = make_session(stack.strict)
    return session.client("elbv2"), session.client("ec2")


def resource_id(stack, step):
    return stack.state_file.read().resources[step]["id"]


def test_apply_twice_then_delete_twice(make_stack, strict):
    stack = make_stack()
    first = edge(stack.up(only=EDGE_HTTP))
    assert {r.outcome for r in first.values()} == {"created"}, [(r.name, r.outcome, r.detail) for r in first.values()]

    second = stack.up(only=EDGE_HTTP)
    assert set(outcomes(second).values()) == {"kept"}, [(r.name, r.outcome, r.detail) for r in second]
    assert stack.mutating_calls() == []

    outputs = stack.state_file.read().outputs
    assert outputs["url"] == f"https://{outputs['alb_dns_name']}"
    assert outputs["frontend_target_group_arn"].split("/")[-2] == "stylesphere-frontend"
    assert outputs["backend_target_group_arn"].split("/")[-2] == "stylesphere-backend"

    down = stack.down(only=EDGE_HTTP)
    assert all(r.ok for r in down), [(r.name, r.outcome, r.detail) for r in down]
    assert {r.outcome for r in edge(down).values()} == {"deleted"}
    assert tagged_leftovers("stylesphere") == []
    assert [r for r in strict.refusals if r[2] == "order"] == []

    again = stack.down(only=EDGE_HTTP)
    assert set(outcomes(again).values()) == {"absent"}
    assert stack.mutating_calls() == []


def test_target_groups_as_aws_holds_them(make_stack):
    stack = make_stack()
    stack.up(only=TARGET_GROUPS)
    elb, _ = clients(stack)
    vpc = resource_id(stack, "vpc")
    for step, port, path, codes in (("frontend-target-group", 3000, "/", "200-399"),
                                    ("backend-target-group", 5000, "/api/health", "200")):
        arn = resource_id(stack, step)
        group = elb.describe_target_groups(TargetGroupArns=[arn])["TargetGroups"][0]
        assert (group["Protocol"], group["Port"], group["TargetType"], group["VpcId"]) == ("HTTP", port, "instance", vpc)
        assert group["HealthCheckPath"] == path and group["Matcher"]["HttpCode"] == codes
        assert (group["HealthCheckIntervalSeconds"], group["HealthCheckTimeoutSeconds"],
                group["HealthyThresholdCount"], group["UnhealthyThresholdCount"]) == (15, 5, 2, 3)
        attributes = {a["Key"]: a["Value"] for a in elb.describe_target_group_attributes(TargetGroupArn=arn)["Attributes"]}
        assert attributes["deregistration_delay.timeout_seconds"] == "30"
        tags = {t["Key"]: t["Value"] for t in elb.describe_tags(ResourceArns=[arn])["TagDescriptions"][0]["Tags"]}
        assert tags["provision:step"] == step and tags["Name"] == f"stylesphere-{step}"
    state = stack.state_file.read().resources["backend-target-group"]
    assert state["attrs"] == {"arn": state["id"], "name": "stylesphere-backend", "port": 5000}


def test_load_balancer_and_http_listener_as_aws_holds_them(make_stack):
    stack = make_stack()
    stack.up(only=EDGE_HTTP)
    elb, _ = clients(stack)
    arn = resource_id(stack, "load-balancer")
    balancer = elb.describe_load_balancers(LoadBalancerArns=[arn])["LoadBalancers"][0]
    assert (balancer["LoadBalancerName"], balancer["Scheme"], balancer["Type"], balancer["IpAddressType"]) == \
        ("stylesphere-alb", "internet-facing", "application", "ipv4")
    assert sorted(z["SubnetId"] for z in balancer["AvailabilityZones"]) == \
        sorted(resource_id(stack, s) for s in ("public-subnet-1", "public-subnet-2"))
    assert balancer["SecurityGroups"] == [resource_id(stack, "alb-security-group")]
    attributes = {a["Key"]: a["Value"] for a in elb.describe_load_balancer_attributes(LoadBalancerArn=arn)["Attributes"]}
    assert attributes["routing.http.drop_invalid_header_fields.enabled"] == "true"
    assert attributes["routing.http2.enabled"] == "true"
    assert attributes["deletion_protection.enabled"] == "false"
    state = stack.state_file.read().resources["load-balancer"]["attrs"]
    assert state["dns_name"] == balancer["DNSName"] and state["name"] == "stylesphere-alb"

    listener = elb.describe_listeners(ListenerArns=[resource_id(stack, "http-listener")])["Listeners"][0]
    assert (listener["Protocol"], listener["Port"], listener["LoadBalancerArn"]) == ("HTTP", 80, arn)
    [action] = listener["DefaultActions"]
    assert action["Type"] == "redirect"
    redirect = action["RedirectConfig"]
    assert (redirect["Protocol"], redirect["Port"], redirect["StatusCode"]) == ("HTTPS", "443", "HTTP_301")
    # Host, path and query kept as they came.
    assert (redirect["Host"], redirect["Path"], redirect["Query"]) == ("#{host}", "/#{path}", "#{query}")


def test_load_balancer_creation_is_waited_for(make_stack, strict):
    strict.delays.alb_create = 0.3
    stack = make_stack()
    results = edge(stack.up(only=["load-balancer"]), ["load-balancer"])
    assert results["load-balancer"].outcome == "created"
    assert results["load-balancer"].seconds >= 0.3
    assert sum(op == "DescribeLoadBalancers" for _, op in stack.last_ctx.calls) >= 3  # polled, not slept
    assert "active" in [r.detail for r in stack.status(only=["load-balancer"]) if r.name == "load-balancer"][0]


def test_a_load_balancer_adopted_while_provisioning_is_waited_for(make_stack, strict):
    """An interrupted run leaves it `provisioning`: the next `up` finishes the wait."""
    stack = make_stack()
    stack.up(only=["load-balancer"])
    strict.delays.alb_create = 60
    strict.alb_created[resource_id(stack, "load-balancer")] = time.monotonic()
    assert "provisioning" in {r.name: r.detail for r in stack.status(only=["load-balancer"])}["load-balancer"]

    polls = []

    def active_after_three_polls(**_):
        polls.append(1)
        if len(polls) >= 3:
            strict.delays.alb_create = 0

    stack.hooks.append(("before-call.elbv2.DescribeLoadBalancers", active_after_three_polls))
    results = edge(stack.up(only=["load-balancer"]), ["load-balancer"])
    assert results["load-balancer"].outcome == "kept"
    assert stack.mutating_calls() == []
    assert strict.delays.alb_create == 0  # it polled until active
    assert "active" in {r.name: r.detail for r in stack.status(only=["load-balancer"])}["load-balancer"]


def test_teardown_waits_for_the_load_balancers_interfaces(make_stack, strict):
    """A deleted ALB keeps its network interfaces for minutes; its subnets and security group
    cannot go before they are released. The load balancer's delete waits for that, so the
    network tier is never refused on their account, and nothing is deleted out of order."""
    strict.delays.alb_delete = 0.3
    strict.delays.alb_eni_release = 0.3
    stack = make_stack()
    stack.up(only=EDGE_HTTP)
    results = {r.name: r for r in stack.down(only=EDGE_HTTP)}
    assert all(r.ok for r in results.values()), [(r.name, r.outcome, r.detail) for r in results.values()]
    assert results["load-balancer"].seconds >= 0.6
    assert tagged_leftovers("stylesphere") == []
    assert [r for r in strict.refusals if r[2] == "order"] == []
    assert not [r for r in strict.refusals if r[0] in ("DeleteSubnet", "DeleteSecurityGroup")]
    assert sum(op == "DescribeNetworkInterfaces" for _, op in stack.last_ctx.calls) >= 3  # polled


def test_lingering_interfaces_are_refused_then_survived(make_stack, strict):
    """The load balancer deleted by someone else (or by a run that died right after the delete):
    `down` meets its lingering interfaces at the subnets and security group, and waits them out."""
    stack = make_stack()
    stack.up(only=EDGE_HTTP)
    elb, _ = clients(stack)
    # The interfaces linger until the first refusal, however slow the machine, then go.
    strict.delays.alb_delete = strict.delays.alb_eni_release = 60

    def released_after_a_refusal(**_):
        if ("DeleteSubnet", "DependencyViolation", "lingering") in strict.refusals:
            strict.delays.alb_delete = strict.delays.alb_eni_release = 0

    stack.hooks.append(("before-call.ec2.DeleteSubnet", released_after_a_refusal))
    elb.delete_load_balancer(LoadBalancerArn=resource_id(stack, "load-balancer"))
    results = stack.down(only=EDGE_HTTP)
    assert all(r.ok for r in results), [(r.name, r.outcome, r.detail) for r in results]
    assert ("DeleteSubnet", "DependencyViolation", "lingering") in strict.refusals
    assert [r for r in strict.refusals if r[2] == "order"] == []
    assert tagged_leftovers("stylesphere") == []


def test_strict_rules_for_the_load_balancer(make_stack, strict):
    """What the strict fixture makes moto do, so that the tests above mean something."""
    stack = make_stack()
    stack.up(only=EDGE_HTTP)
    elb, ec2 = clients(stack)
    arn = resource_id(stack, "load-balancer")
    description = "ELB " + arn.split(":loadbalancer/")[1]
    subnet, group = resource_id(stack, "public-subnet-1"), resource_id(stack, "alb-security-group")

    # A live ALB has an interface per subnet, found by the filters the tool uses.
    by_description = ec2.describe_network_interfaces(
        Filters=[{"Name": "description", "Values": [description]}])["NetworkInterfaces"]
    assert sorted(e["SubnetId"] for e in by_description) == \
        sorted([subnet, resource_id(stack, "public-subnet-2")])
    assert {e["InterfaceType"] for e in by_description} == {"interface"}
    assert [e["Description"] for e in ec2.describe_network_interfaces(
        Filters=[{"Name": "subnet-id", "Values": [subnet]}])["NetworkInterfaces"]] == [description]
    assert len(ec2.describe_network_interfaces(
        Filters=[{"Name": "group-id", "Values": [group]}])["NetworkInterfaces"]) == 2
    assert ec2.describe_network_interfaces(
        Filters=[{"Name": "description", "Values": ["ELB app/other/0"]}])["NetworkInterfaces"] == []

    # Deleting a subnet or the group under a live ALB: an order bug.
    with pytest.raises(Exception, match="DependencyViolation"):
        ec2.delete_subnet(SubnetId=subnet)
    assert strict.refusals[-1] == ("DeleteSubnet", "DependencyViolation", "order")

    # A target group a listener forwards to.
    elb.create_listener(LoadBalancerArn=arn, Protocol="HTTP", Port=8080, DefaultActions=[
        {"Type": "forward", "TargetGroupArn": resource_id(stack, "frontend-target-group")}])
    with pytest.raises(Exception, match="ResourceInUse"):
        elb.delete_target_group(TargetGroupArn=resource_id(stack, "frontend-target-group"))
    assert strict.refusals[-1] == ("DeleteTargetGroup", "ResourceInUse", "order")

    # After the delete, the interfaces linger, and so do the refusals, of the other kind.
    strict.delays.alb_delete = strict.delays.alb_eni_release = 60
    elb.delete_load_balancer(LoadBalancerArn=arn)
    assert len(ec2.describe_network_interfaces(
        Filters=[{"Name": "description", "Values": [description]}])["NetworkInterfaces"]) == 2
    with pytest.raises(Exception, match="DependencyViolation"):
        ec2.delete_security_group(GroupId=group)
    assert strict.refusals[-1][2] == "lingering"
    strict.delays.alb_delete = strict.delays.alb_eni_release = 0
    assert ec2.describe_network_interfaces(
        Filters=[{"Name": "description", "Values": [description]}])["NetworkInterfaces"] == []


def test_internet_facing_load_balancer_needs_an_attached_gateway(make_stack, strict):
    stack = make_stack()
    stack.up(only=["public-subnet-1", "public-subnet-2", "alb-security-group"])
    elb, _ = clients(stack)
    with pytest.raises(Exception, match="InvalidSubnet"):
        elb.create_load_balancer(Name="no-gateway", Subnets=[resource_id(stack, "public-subnet-1"),
                                                             resource_id(stack, "public-subnet-2")])
    assert strict.refusals[-1] == ("CreateLoadBalancer", "InvalidSubnet", "order")


def test_found_again_by_tags_without_state(make_stack):
    stack = make_stack()
    stack.up(only=EDGE_HTTP)
    stack.state_file.remove()
    results = edge(stack.up(only=EDGE_HTTP))
    assert {r.outcome for r in results.values()} == {"kept"}, [(r.name, r.outcome, r.detail) for r in results.values()]
    assert stack.mutating_calls() == []
    counts = count_tagged("stylesphere")
    assert all(counts[name] == 1 for name in ("frontend-target-group", "backend-target-group", "load-balancer"))

    stack.state_file.remove()
    results = edge(stack.down(only=EDGE_HTTP))
    assert {r.outcome for r in results.values()} == {"deleted"}
    assert tagged_leftovers("stylesphere") == []


def test_another_stacks_edge_is_not_ours(make_stack):
    from provisioner.shape.config import StackConfig

    a = make_stack("lab-a")
    b = make_stack("lab-b", config=StackConfig(
        vpc_cidr="10.1.0.0/16", public_subnet_cidrs=["10.1.1.0/24", "10.1.2.0/24"],
        private_subnet_cidrs=["10.1.11.0/24", "10.1.12.0/24"], zones=["us-east-1a", "us-east-1b"]))
    a.up(only=EDGE_HTTP)
    b.up(only=EDGE_HTTP)
    assert all(r.ok for r in a.down(only=EDGE_HTTP))
    assert tagged_leftovers("lab-a") == []
    assert {r.outcome for r in edge(b.up(only=EDGE_HTTP)).values()} == {"kept"}


def test_drift_is_reported_by_plan_and_fixed_by_up(make_stack):
    stack = make_stack()
    stack.up(only=EDGE_HTTP)
    elb, _ = clients(stack)
    backend = resource_id(stack, "backend-target-group")
    balancer = resource_id(stack, "load-balancer")
    # Someone changes the backend's health check and deregistration delay, turns HTTP/2 off and
    # makes the HTTP redirect temporary.
    elb.modify_target_group(TargetGroupArn=backend, HealthCheckPath="/", HealthyThresholdCount=5)
    elb.modify_target_group_attributes(TargetGroupArn=backend, Attributes=[
        {"Key": "deregistration_delay.timeout_seconds", "Value": "300"}])
    elb.modify_load_balancer_attributes(LoadBalancerArn=balancer, Attributes=[
        {"Key": "routing.http2.enabled", "Value": "false"}])
    elb.modify_listener(ListenerArn=resource_id(stack, "http-listener"), DefaultActions=[
        {"Type": "redirect", "RedirectConfig": {"Protocol": "HTTPS", "Port": "443", "StatusCode": "HTTP_302"}}])

    plan = edge(stack.plan(only=EDGE_HTTP))
    assert stack.mutating_calls() == []
    assert plan["backend-target-group"].outcome == "update"
    changes = plan["backend-target-group"].changes
    assert any("HealthCheckPath" in c and "/api/health" in c for c in changes), changes
    assert any("HealthyThresholdCount" in c for c in changes), changes
    assert any("deregistration delay" in c for c in changes), changes
    assert plan["frontend-target-group"].outcome == "no change"
    assert any("routing.http2.enabled" in c for c in plan["load-balancer"].changes)
    assert any("HTTP_301" in c for c in plan["http-listener"].changes), plan["http-listener"].changes

    fixed = edge(stack.up(only=EDGE_HTTP))
    assert {n: r.outcome for n, r in fixed.items()} == {
        "frontend-target-group": "kept", "backend-target-group": "updated", "load-balancer": "updated",
        "http-listener": "updated"}
    group = elb.describe_target_groups(TargetGroupArns=[backend])["TargetGroups"][0]
    assert (group["HealthCheckPath"], group["HealthyThresholdCount"]) == ("/api/health", 2)
    listener = elb.describe_listeners(ListenerArns=[resource_id(stack, "http-listener")])["Listeners"][0]
    assert listener["DefaultActions"][0]["RedirectConfig"]["StatusCode"] == "HTTP_301"
    assert set(outcomes(stack.plan(only=EDGE_HTTP)).values()) == {"no change"}


def test_removed_tags_are_put_back(make_stack):
    stack = make_stack()
    stack.up(only=EDGE_HTTP)
    elb, _ = clients(stack)
    arn = resource_id(stack, "load-balancer")
    elb.remove_tags(ResourceArns=[arn], TagKeys=["Name"])
    results = edge(stack.up(only=EDGE_HTTP))
    assert results["load-balancer"].outcome == "updated"
    tags = {t["Key"]: t["Value"] for t in elb.describe_tags(ResourceArns=[arn])["TagDescriptions"][0]["Tags"]}
    assert tags["Name"] == "stylesphere-load-balancer"


def test_a_listener_someone_else_made_is_not_adopted(make_stack):
    """An untagged listener on port 80 is not ours: `up` does not take it over silently (AWS
    refuses a second listener on the port, which names the conflict)."""
    stack = make_stack()
    stack.up(only=["load-balancer"])
    elb, _ = clients(stack)
    elb.create_listener(LoadBalancerArn=resource_id(stack, "load-balancer"), Protocol="HTTP", Port=80,
                        DefaultActions=[{"Type": "fixed-response", "FixedResponseConfig": {"StatusCode": "200"}}])
    results = edge(stack.up(only=EDGE_HTTP))
    assert results["http-listener"].outcome == "failed"
    assert "DuplicateListener" in results["http-listener"].detail


def test_what_blocks_a_subnet_names_the_load_balancers_interfaces(make_stack, strict, monkeypatch):
    """A load balancer the stack does not know (made by hand in its subnets) keeps `down` from
    deleting the subnets: after the deadline the message names its interfaces."""
    from provisioner.engine import retries

    monkeypatch.setitem(retries.TIMEOUTS, "dependency", 0.3)
    strict.delays.alb_delete = strict.delays.alb_eni_release = 0.05
    stack = make_stack()
    stack.up(only=EDGE_HTTP)
    elb, _ = clients(stack)
    foreign = elb.create_load_balancer(
        Name="by-hand", Subnets=[resource_id(stack, "public-subnet-1"), resource_id(stack, "public-subnet-2")],
        SecurityGroups=[resource_id(stack, "alb-security-group")])["LoadBalancers"][0]
    results = {r.name: r for r in stack.down(only=EDGE_HTTP)}
    assert results["public-subnet-1"].outcome == "failed", [(r.name, r.outcome, r.detail) for r in results.values()]
    assert "ELB app/by-hand/" in results["public-subnet-1"].detail, results["public-subnet-1"].detail
    assert results["load-balancer"].outcome == "deleted"
    elb.delete_load_balancer(LoadBalancerArn=foreign["LoadBalancerArn"])
