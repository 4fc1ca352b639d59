"""Shared fixtures: moto in-process (never the network), a run context wired like the CLI's, the
strict fixture that makes moto refuse what AWS refuses, and a scan for leftovers."""

from __future__ import annotations

import os

import boto3
import pytest
from moto import mock_aws

from provisioner import emulator
from provisioner.config import StackConfig
from provisioner.context import TAG_STACK, RunContext
from provisioner.engine import Engine
from provisioner.registry import build_steps
from provisioner.state import StackState, StateFile

from strict import StrictAws

REGION = "us-east-1"
ACCOUNT = "123456789012"
ZONES = ["us-east-1a", "us-east-1b"]
POLL = 0.02

emulator.apply()


@pytest.fixture(autouse=True)
def aws_env(monkeypatch, tmp_path):
    """No test may reach a real account or read the developer's AWS config."""
    for var in list(os.environ):
        if var.startswith("AWS_") or var.startswith("PROVISION_"):
            monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials"))
    monkeypatch.setenv("PROVISION_POLL_INTERVAL", str(POLL))
    monkeypatch.setenv("PROVISION_SANDBOX_DIR", str(tmp_path / "sandbox"))


@pytest.fixture
def moto_aws():
    with mock_aws():
        yield


@pytest.fixture
def strict(moto_aws):
    """The strict rules for every session made by `make_stack` in this test."""
    return StrictAws(region=REGION)


class Stack:
    """One stack under test: runs the engine's commands the way the CLI does, in-process."""

    def __init__(self, name: str, state_dir, strict: StrictAws | None, config: StackConfig | None = None,
                 hooks=()):
        self.name = name
        self.state_file = StateFile(state_dir, name)
        self.strict = strict
        self.config = config or StackConfig(zones=list(ZONES))
        self.hooks = list(hooks)  # (event name, handler) registered on every session
        self.last_ctx: RunContext | None = None

    def session(self):
        session = boto3.session.Session(region_name=REGION)
        if self.strict is not None:
            self.strict.install(session.events)
        for event, handler in self.hooks:
            # First, so that a before-send hook answers before moto's own handler does.
            session.events.register_first(event, handler)
        return session

    def context(self, config: StackConfig | None = None) -> RunContext:
        ctx = RunContext(stack=self.name, region=REGION, config=config or self.config,
                         poll_interval=POLL, session_factory=self.session)
        ctx.account = ACCOUNT
        self.last_ctx = ctx
        return ctx

    def engine(self, superset: bool = False) -> Engine:
        state = self.state_file.load_for(ACCOUNT, REGION)
        config = StackConfig.from_dict(state.config) if state and state.config else self.config
        if superset:
            config = config.superset()
        ctx = self.context(config)
        if state is None:
            state = StackState(stack=self.name, account=ACCOUNT, region=REGION, config=config.to_dict())
        ctx.generation = state.generation
        return Engine(ctx, build_steps(config), state, self.state_file)

    def up(self):
        return self.engine().up()

    def down(self):
        return self.engine(superset=True).down()

    def plan(self):
        return self.engine().plan()

    def status(self):
        return self.engine().status()

    def mutating_calls(self):
        from provisioner.context import is_mutating

        return [c for c in self.last_ctx.calls if is_mutating(c[1])]


@pytest.fixture
def make_stack(tmp_path, strict):
    def make(name="stylesphere", **kwargs):
        return Stack(name, tmp_path / "state", strict, **kwargs)
    return make


def outcomes(results) -> dict[str, str]:
    return {r.name: r.outcome for r in results}


def tagged_leftovers(stack: str, region: str = REGION) -> list[str]:
    """Every billable or structural resource still carrying the stack's tag, checked on the
    client side too (moto ignores some tag filters)."""
    ec2 = boto3.client("ec2", region_name=region)

    def ours(item):
        return any(t["Key"] == TAG_STACK and t["Value"] == stack for t in item.get("Tags", []))

    found = []
    for op, key, id_key in (("describe_vpcs", "Vpcs", "VpcId"), ("describe_subnets", "Subnets", "SubnetId"),
                            ("describe_internet_gateways", "InternetGateways", "InternetGatewayId"),
                            ("describe_route_tables", "RouteTables", "RouteTableId"),
                            ("describe_security_groups", "SecurityGroups", "GroupId"),
                            ("describe_addresses", "Addresses", "AllocationId"),
                            ("describe_nat_gateways", "NatGateways", "NatGatewayId")):
        for item in getattr(ec2, op)()[key]:
            if ours(item) and item.get("State") not in ("deleted",):
                found.append(item[id_key])
    return found


def count_tagged(stack: str, region: str = REGION) -> dict[str, int]:
    """How many live resources carry each provision:step tag of the stack."""
    ec2 = boto3.client("ec2", region_name=region)
    counts: dict[str, int] = {}
    for op, key in (("describe_vpcs", "Vpcs"), ("describe_subnets", "Subnets"),
                    ("describe_internet_gateways", "InternetGateways"), ("describe_route_tables", "RouteTables"),
                    ("describe_security_groups", "SecurityGroups"), ("describe_addresses", "Addresses"),
                    ("describe_nat_gateways", "NatGateways")):
        for item in getattr(ec2, op)()[key]:
            tags = {t["Key"]: t["Value"] for t in item.get("Tags", [])}
            if tags.get(TAG_STACK) == stack and item.get("State") != "deleted":
                counts[tags["provision:step"]] = counts.get(tags["provision:step"], 0) + 1
    return counts
