"""What the load balancer's steps share (target groups, the load balancer, listeners, the rule).

ELBv2 differs from EC2 in two ways that matter for finding things again: tags are not part of a
describe result (DescribeTags, at most 20 ARNs a call), and a lookup of something missing is an
error (LoadBalancerNotFound...) rather than an empty list. No step is registered here.
"""

from __future__ import annotations
from typing import ClassVar

from botocore.exceptions import ClientError

from provisioner.engine.context import Resource
from provisioner.engine.registry import Step
from provisioner.engine.retries import is_gone, lookup

DESCRIBE_TAGS_LIMIT = 20


def described(fn, key: str, **params) -> list[dict]:
    """The items of a describe call, or [] when what it names does not exist."""
    found = lookup(fn, **params)   # LoadBalancerNotFound and friends: what it names does not exist
    return found[key] if found is not None else []


def with_tags(ctx, items: list[dict], arn_key: str) -> list[dict]:
    """The items, each with its "Tags" list; an item deleted in between is dropped."""
    elb = ctx.client("elbv2")
    arns = [i[arn_key] for i in items]
    tags: dict[str, list] = {}
    for start in range(0, len(arns), DESCRIBE_TAGS_LIMIT):
        batch = arns[start:start + DESCRIBE_TAGS_LIMIT]
        try:
            described_tags = elb.describe_tags(ResourceArns=batch)["TagDescriptions"]
        except ClientError as e:
            if not is_gone(e):
                raise
            # One of the batch is gone and AWS fails the whole call: ask one by one.
            described_tags = [d for arn in batch for d in described(elb.describe_tags, "TagDescriptions",
                                                                    ResourceArns=[arn])]
        tags.update({d["ResourceArn"]: d.get("Tags", []) for d in described_tags})
    return [dict(i, Tags=tags[i[arn_key]]) for i in items if i[arn_key] in tags]


def load_balancer(ctx) -> dict | None:
    """The stack's load balancer: the one the load-balancer step found, else by its name (when the
    state is lost, a tagged step is looked for before its dependencies are)."""
    elb = ctx.client("elbv2")
    dep = ctx.dep("load-balancer")
    if dep is not None:
        found = described(elb.describe_load_balancers, "LoadBalancers", LoadBalancerArns=[dep.id])
        if found:
            return found[0]
    found = described(elb.describe_load_balancers, "LoadBalancers", Names=[load_balancer_name(ctx)])
    return found[0] if found else None


def load_balancer_name(ctx) -> str:
    return f"{ctx.stack}-alb"


def listener_on(ctx, port: int) -> dict | None:
    """The stack's load balancer's listener on this port, whoever made it."""
    balancer = load_balancer(ctx)
    if balancer is None:
        return None
    listeners = described(ctx.client("elbv2").describe_listeners, "Listeners",
                          LoadBalancerArn=balancer["LoadBalancerArn"])
    return next((listener for listener in listeners if listener["Port"] == port), None)


def action_value(action: dict) -> tuple:
    """An action as a comparable value. AWS answers a forward with both TargetGroupArn and a
    ForwardConfig, and fills in the redirect fields one left at their defaults."""
    kind = action["Type"]
    if kind == "forward":
        groups = [action["TargetGroupArn"]] if action.get("TargetGroupArn") else [
            g["TargetGroupArn"] for g in action.get("ForwardConfig", {}).get("TargetGroups", [])]
        return (kind, tuple(sorted(groups)))
    if kind == "redirect":
        config = {"Host": "#{host}", "Path": "/#{path}", "Query": "#{query}", "Protocol": "#{protocol}",
                  "Port": "#{port}", **action.get("RedirectConfig", {})}
        return (kind, tuple(sorted(config.items())))
    if kind == "fixed-response":
        config = action.get("FixedResponseConfig", {})
        return (kind, (config.get("StatusCode"), config.get("ContentType"), config.get("MessageBody")))
    return (kind, repr(sorted(action.items())))


def actions_value(actions: list[dict]) -> tuple:
    return tuple(sorted(action_value(a) for a in actions))


def forward(target_group_arn: str) -> list[dict]:
    return [{"Type": "forward", "TargetGroupArn": target_group_arn}]


class ElbStep(Step):
    """A tagged ELBv2 resource: find by the ARN in state, then among candidates by the tool's
    tags (checked here, on the client side); put the tags back if someone removed them."""

    arn_key: ClassVar[str]  # e.g. "TargetGroupArn"

    def by_arn(self, ctx, arn: str) -> list[dict]:
        raise NotImplementedError

    def candidates(self, ctx) -> list[dict]:
        """Where this step's resource would be when its ARN is unknown: by its name, or on the
        stack's load balancer."""
        raise NotImplementedError

    def attrs(self, item: dict) -> dict:
        return {"arn": item[self.arn_key]}

    def to_resource(self, item: dict) -> Resource:
        return Resource(id=item[self.arn_key], attrs=self.attrs(item), raw=item)

    def find_all(self, ctx, known_id):
        if known_id:
            items = with_tags(ctx, self.by_arn(ctx, known_id), self.arn_key)
            for item in items:
                ctx.claim(self.name, item[self.arn_key], item.get("Tags", []), self.kind)
            if items:
                return [self.to_resource(i) for i in items]
        return [self.to_resource(i) for i in with_tags(ctx, self.candidates(ctx), self.arn_key)
                if ctx.owns(i["Tags"], self.name)]

    def created(self, item: dict, tags: list[dict]) -> Resource:
        """The resource from a create call's answer, which holds the whole description except the
        tags (those we just gave)."""
        return self.to_resource(dict(item, Tags=tags))

    def update(self, ctx, resource, apply):
        return ctx.converge_tags(resource.raw.get("Tags", []), self.name, apply,
                                 lambda missing: ctx.client("elbv2").add_tags(ResourceArns=[resource.id], Tags=missing))
