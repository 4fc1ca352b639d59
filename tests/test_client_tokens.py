"""A ClientToken replayed after a manual deletion.

AWS answers a create with a token it has seen with the first call's result, whatever that resource
has become since; moto ignores the tokens. So `TokenReplay` makes AWS's behaviour happen: the first
answer to each token is kept, and a later call with that token gets it again. Someone deletes the
NAT gateway (or the launch template) by hand, runs `up` again, and the step must notice the former
resource and take a fresh token, not wait on a deleted gateway or adopt a template that is gone."""

from __future__ import annotations

import copy
import datetime

import boto3

from stacks import REGION, outcomes


class _Ok:
    status_code = 200
    headers: dict = {}
    content = b""


class TokenReplay:
    def __init__(self, operation: str):
        self.operation = operation
        self.first: dict[str, dict] = {}
        self.replayed: list[str] = []
        self.tokens: list[str] = []

    def hooks(self, backdate: datetime.timedelta | None = None):
        def before(params, context, **_):
            token = (params.get("body") or {}).get("ClientToken")
            self.tokens.append(token)
            if token in self.first:
                self.replayed.append(token)
                answer = copy.deepcopy(self.first[token])
                return _Ok(), answer
            context["token_replay"] = token
            return None

        def after(parsed, context, **_):
            token = context.pop("token_replay", None)
            if token and isinstance(parsed, dict) and "Error" not in parsed:
                kept = copy.deepcopy(parsed)
                if backdate is not None:
                    for value in kept.values():
                        if isinstance(value, dict) and "CreateTime" in value:
                            value["CreateTime"] -= backdate
                self.first[token] = kept

        return [(f"before-call.ec2.{self.operation}", before), (f"after-call.ec2.{self.operation}", after)]


def ec2():
    return boto3.client("ec2", region_name=REGION)


NAT_STEPS = ["vpc", "internet-gateway", "internet-gateway-attachment", "public-subnet-1", "nat-eip-1",
             "nat-gateway-1"]


def test_a_nat_gateway_deleted_by_hand_is_made_again_with_a_fresh_token(make_stack, strict):
    replay = TokenReplay("CreateNatGateway")
    stack = make_stack(hooks=replay.hooks())
    assert outcomes(stack.up(only=NAT_STEPS))["nat-gateway-1"] == "created"
    first = stack.state_file.read().resources["nat-gateway-1"]["id"]
    ec2().delete_nat_gateway(NatGatewayId=first)

    results = {r.name: r for r in stack.up(only=NAT_STEPS)}
    assert results["nat-gateway-1"].outcome == "created", results["nat-gateway-1"].error
    second = stack.state_file.read().resources["nat-gateway-1"]["id"]
    assert second != first
    # The first token was answered with the deleted gateway; the next one made a new gateway.
    assert len(replay.replayed) == 1 and len(set(replay.tokens)) == 2
    assert ec2().describe_nat_gateways(NatGatewayIds=[second])["NatGateways"][0]["State"] == "available"
    # A third `up` keeps it: the token chain is deterministic, nothing more is made.
    assert outcomes(stack.up(only=NAT_STEPS))["nat-gateway-1"] == "kept"


def test_a_retried_create_still_meets_its_own_gateway(make_stack, strict):
    """The point of the token: a create retried within the run (a dropped answer) is the same
    gateway, never a second one. The fresh token is only for a former gateway that is gone."""
    replay = TokenReplay("CreateNatGateway")
    stack = make_stack(hooks=replay.hooks())
    from steps.network.nat_gateway import NatGateway

    stack.up(only=NAT_STEPS[:-1])
    ctx = stack.last_ctx  # holds the resources the gateway depends on

    step = NatGateway(0)
    made = step.create(ctx)
    again = step.create(ctx)  # the same token: AWS answers the same gateway, still alive
    assert again.id == made.id and replay.replayed == [replay.tokens[0]]


def test_a_launch_template_deleted_by_hand_is_made_again_with_a_fresh_token(make_stack, strict):
    replay = TokenReplay("CreateLaunchTemplate")
    # AWS keeps the first answer's CreateTime: by the time someone deleted the template by hand
    # and ran `up` again, it is older than the new run.
    stack = make_stack(hooks=replay.hooks(backdate=datetime.timedelta(minutes=10)))
    assert outcomes(stack.up())["launch-template"] == "created"
    first = stack.state_file.read().resources["launch-template"]["id"]
    ec2().delete_launch_template(LaunchTemplateId=first)

    results = {r.name: r for r in stack.up()}
    assert results["launch-template"].outcome == "created", results["launch-template"].error
    second = stack.state_file.read().resources["launch-template"]["id"]
    assert second != first
    assert ec2().describe_launch_templates(LaunchTemplateIds=[second])["LaunchTemplates"]
    assert len(replay.replayed) == 1
