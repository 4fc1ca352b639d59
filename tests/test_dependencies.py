"""How a step needs its dependencies: ready and held (the default), by creation only, or in
service without holding it. The engine starts a creation dependent before the other is ready,
and `down` is not ordered by an in-service need."""

from __future__ import annotations

import threading

from provisioner.shape.config import StackConfig
from provisioner.engine.context import Resource, RunContext
from provisioner.engine.engine import Engine
from provisioner.engine.registry import (Step, build_steps, created, dependency_graph, in_service, up_graph)
from provisioner.engine.state import StackState

from stacks import REGION


class Slow(Step):
    """Created at once, in service only when someone sets `ready_event` (a load balancer)."""

    kind = "slow_thing"
    gone_codes = frozenset()

    def __init__(self, events):
        super().__init__("slow")
        self.events = events

    def find_all(self, ctx, known_id):
        return []

    def create(self, ctx):
        self.events.append("slow created")
        return Resource(id="slow-1", attrs={})

    def ready(self, ctx, resource):
        assert self.ready_event.wait(5), "the creation dependent did not start before this was ready"
        self.events.append("slow ready")


class Quick(Step):
    kind = "quick_thing"
    gone_codes = frozenset()

    def __init__(self, name, events, needs):
        super().__init__(name, depends_on=(needs,))
        self.events = events

    def find_all(self, ctx, known_id):
        return []

    def create(self, ctx):
        self.events.append(f"{self.name} created")
        return Resource(id=f"{self.name}-1", attrs={})


def engine(steps):
    ctx = RunContext(stack="deps", region=REGION, config=StackConfig())
    return Engine(ctx, {s.name: s for s in steps}, StackState(stack="deps", account="123456789012", region=REGION))


def test_a_creation_dependent_starts_before_the_dependency_is_ready_and_a_ready_one_after():
    events: list[str] = []
    slow = Slow(events)
    slow.ready_event = threading.Event()
    early = Quick("early", events, created("slow"))
    late = Quick("late", events, "slow")
    original = early.create

    def create(ctx):
        made = original(ctx)
        slow.ready_event.set()   # only this one's start can let the slow one turn ready
        return made

    early.create = create
    results = {r.name: r for r in engine([slow, early, late]).up()}
    assert {n: r.outcome for n, r in results.items()} == {"slow": "created", "early": "created", "late": "created"}
    assert events.index("early created") < events.index("slow ready") < events.index("late created")
    # One result per step: the wait until ready counts in the step's time.
    assert len(results) == 3


def test_a_failed_wait_until_ready_fails_the_step_and_skips_its_ready_dependents():
    events: list[str] = []
    slow = Slow(events)
    slow.ready_event = threading.Event()

    def never_ready(ctx, resource):
        raise RuntimeError("stuck provisioning")

    slow.ready = never_ready
    late = Quick("late", events, "slow")
    early = Quick("early", events, created("slow"))
    results = {r.name: r for r in engine([slow, late, early]).up()}
    assert results["slow"].outcome == "failed" and "stuck provisioning" in results["slow"].detail
    assert results["slow"].resource_id == "slow-1"
    assert results["late"].outcome == "skipped" and "slow did not finish" in results["late"].detail
    assert results["early"].outcome == "created"


def test_up_graph_splits_a_step_with_a_ready_phase():
    events: list[str] = []
    steps = {s.name: s for s in (Slow(events), Quick("early", events, created("slow")), Quick("late", events, "slow"))}
    graph = up_graph(steps)
    assert graph == {"slow": set(), "slow@ready": {"slow"}, "early": {"slow"}, "late": {"slow@ready"}}


def test_down_does_not_wait_for_the_instances_before_the_nat_gateway():
    """The group needs the NAT routes in service at launch, and holds nothing of them."""
    steps = build_steps(StackConfig().superset())
    reverse = dependency_graph(steps, reverse=True)

    def after(name, seen=None):
        """Everything `down` must finish before deleting `name`."""
        seen = set() if seen is None else seen
        for pred in reverse[name]:
            if pred not in seen:
                seen.add(pred)
                after(pred, seen)
        return seen

    assert "auto-scaling-group" not in after("nat-gateway-1")
    assert "auto-scaling-group" not in after("private-route-table-1")
    assert steps["auto-scaling-group"].needs["private-subnet-1-association"] == "in-service"
    # Still held: the subnets the instances are in, the template and the target groups.
    for held in ("private-subnet-1", "private-subnet-2", "launch-template", "frontend-target-group"):
        assert "auto-scaling-group" in after(held), held
    # And `up` still launches only once the routes are in place.
    assert "private-subnet-1-association" in up_graph(steps)["auto-scaling-group"]


def test_a_plain_dependency_is_needed_ready_and_held():
    steps = build_steps(StackConfig())
    assert steps["https-listener"].needs["load-balancer"] == "ready"
    assert in_service("x").needs == "in-service" and created("x").needs == "created"


def test_a_client_of_another_region_keeps_the_runs_hooks():
    ctx = RunContext(stack="deps", region=REGION, config=StackConfig())
    other = ctx.client("acm", region="eu-west-1")
    assert other.meta.region_name == "eu-west-1" and ctx.client("acm", region="eu-west-1") is other
    assert ctx.client("acm").meta.region_name == REGION and ctx.client("acm", region=REGION) is ctx.client("acm")
    assert other.meta.events is not ctx.client("acm").meta.events


def test_lookup_makes_not_found_absent_and_nothing_else():
    import pytest
    from botocore.exceptions import ClientError

    from provisioner.engine.retries import lookup

    def refuse(code):
        def call(**_):
            raise ClientError({"Error": {"Code": code, "Message": "x"}}, "GetRole")
        return call

    assert lookup(refuse("NoSuchEntity"), RoleName="r") is None
    assert lookup(refuse("LoadBalancerNotFound")) is None         # every kind's gone codes by default
    assert lookup(lambda **kw: kw, RoleName="r") == {"RoleName": "r"}
    with pytest.raises(ClientError):
        lookup(refuse("AccessDenied"))
    with pytest.raises(ClientError):
        lookup(refuse("NoSuchEntity"), gone=frozenset({"NoSuchBucket"}))
