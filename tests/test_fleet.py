"""`provision fleet` through the CLI, on moto with the strict fixture: a class roster becomes one
stack per student, built concurrently under one rate limiter; a failed stack stops only itself and
a re-run finishes it; the quota preflight refuses a class that does not fit before anything is
made; status, report and down see the class by its tags."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import threading

import boto3
import pytest

from provisioner.engine.context import TAG_ROSTER, TAG_STUDENT, RunContext, is_mutating
from provisioner.engine.errors import Interrupted
from provisioner.commands.fleet import RateLimiter
from provisioner.commands.runner import Connection

from stacks import REGION, count_tagged, make_session
from test_cli import cli, refuse, state_dir  # noqa: F401  (fixtures)
from test_retries import ThrottleFirst

ROSTER = """name,email
Ada Lovelace,ada@example.edu
Alan Turing,alan@example.edu
Grace Hopper,grace@example.edu
"""


@pytest.fixture
def hooks(strict, monkeypatch):
    """(event, handler) pairs installed first on every session the CLI makes, with the strict
    rules: a before-send hook then answers before moto does."""
    installed: list[tuple[str, object]] = []
    original = Connection.context

    def context(self, stack, region, config, reporter):
        ctx = original(self, stack, region, config, reporter)
        ctx._session_factory = lambda: make_session(strict, installed)
        return ctx

    monkeypatch.setattr(Connection, "context", context)
    return installed


@pytest.fixture
def roster(tmp_path):
    path = tmp_path / "cs101.csv"
    path.write_text(ROSTER)
    return str(path)


@pytest.fixture
def calls(monkeypatch):
    """Every AWS operation the CLI's contexts make, as (stack, operation)."""
    seen: list[tuple[str, str]] = []
    lock = threading.Lock()
    original = RunContext._before_call

    def before_call(self, model, context, **kwargs):
        with lock:
            seen.append((self.stack, model.name))
        return original(self, model, context, **kwargs)

    monkeypatch.setattr(RunContext, "_before_call", before_call)
    return seen


def fleet_stacks() -> list[str]:
    ec2 = boto3.client("ec2", region_name=REGION)
    vpcs = ec2.describe_vpcs(Filters=[{"Name": f"tag:{TAG_ROSTER}", "Values": ["cs101"]}])["Vpcs"]
    return sorted(next(t["Value"] for t in v["Tags"] if t["Key"] == "provision:stack") for v in vpcs)


def test_fleet_up_builds_a_stack_per_student_and_a_rerun_changes_nothing(hooks, roster, state_dir, calls):
    result = cli("fleet", "up", "--roster", roster, "--parallel", "3", state_dir=state_dir)
    assert result.exit_code == 0, result.output
    assert "3 of 3 stack(s) up, 3 healthy" in result.text
    stacks = fleet_stacks()
    assert len(stacks) == 3 and all(s.startswith("cs101-") for s in stacks), stacks
    # Every stack's resources say which class and which student they belong to.
    ec2 = boto3.client("ec2", region_name=REGION)
    students = set()
    for vpc in ec2.describe_vpcs(Filters=[{"Name": f"tag:{TAG_ROSTER}", "Values": ["cs101"]}])["Vpcs"]:
        students.add({t["Key"]: t["Value"] for t in vpc["Tags"]}[TAG_STUDENT])
    assert students == {"ada@example.edu", "alan@example.edu", "grace@example.edu"}
    for stack in stacks:
        assert sum(count_tagged(stack).values()) >= 20
    # list sees the class, with its roster.
    listed = json.loads(cli("list", "--json", state_dir=state_dir).stdout)
    assert {s["stack"]: s["roster"] for s in listed["stacks"]} == {s: "cs101" for s in stacks}

    calls.clear()
    again = cli("fleet", "up", "--roster", roster, state_dir=state_dir)
    assert again.exit_code == 0, again.output
    assert "0 resource(s) created or changed" in again.text
    assert [c for c in calls if is_mutating(c[1])] == []
    assert "all 3 stack(s) exist" in again.text


def test_a_failed_stack_does_not_stop_the_others_and_a_rerun_finishes_it(hooks, roster, state_dir):
    def refuse_alan(params, **_):
        # EC2's query protocol: the serialized form, e.g. TagSpecification.1.Tag.6.Value.
        if "alan@example.edu" in params["body"].values():
            return refuse("VpcLimitExceeded", "The maximum number of VPCs has been reached.")
        return None

    hooks.append(("before-call.ec2.CreateVpc", refuse_alan))
    result = cli("fleet", "up", "--roster", roster, state_dir=state_dir)
    assert result.exit_code == 1, result.output
    assert "2 of 3 stack(s) up, 2 healthy; 1 failed" in result.text
    assert "cs101-alan-turing" in result.text and "VpcLimitExceeded" in result.text
    assert "Run the same `provision fleet up` again" in result.text
    assert fleet_stacks() == ["cs101-ada-lovelace", "cs101-grace-hopper"]

    hooks.clear()
    again = cli("fleet", "up", "--roster", roster, state_dir=state_dir)
    assert again.exit_code == 0, again.output
    assert "3 of 3 stack(s) up, 3 healthy" in again.text
    assert fleet_stacks() == ["cs101-ada-lovelace", "cs101-alan-turing", "cs101-grace-hopper"]


def test_ctrl_c_stops_every_stack_and_a_rerun_finishes_the_class(hooks, roster, state_dir):
    fired = threading.Event()

    def ctrl_c(**_):
        if not fired.is_set():
            fired.set()
            os.kill(os.getpid(), signal.SIGINT)  # delivered to the main thread, as a real Ctrl-C

    hooks.append(("before-call.elbv2.CreateLoadBalancer", ctrl_c))
    first = cli("fleet", "up", "--roster", roster, state_dir=state_dir)
    assert fired.is_set()
    assert first.exit_code == 130, first.output
    assert "interrupted with 0 of 3 stack(s) up" in first.text and "fleet up --roster" in first.text
    hooks.clear()
    second = cli("fleet", "up", "--roster", roster, state_dir=state_dir)
    assert second.exit_code == 0, second.output
    assert "3 of 3 stack(s) up, 3 healthy" in second.text


def test_throttling_slows_the_whole_fleet_down_and_fails_nobody(hooks, roster, state_dir):
    throttle = ThrottleFirst(6)
    hooks.append(("before-send.ec2.CreateSubnet", throttle))
    result = cli("fleet", "up", "--roster", roster, "--no-wait", state_dir=state_dir)
    assert result.exit_code == 0, result.output
    assert "3 of 3 stack(s) up" in result.text
    assert "6 throttled" in result.text
    assert throttle.calls >= 6 + 12


def test_the_quota_preflight_refuses_a_class_that_does_not_fit(hooks, tmp_path, state_dir):
    ec2 = boto3.client("ec2", region_name=REGION)
    # moto's VPC quota is AWS's default of 5 per region; the default VPC and two more are in use.
    for i in range(2):
        ec2.create_vpc(CidrBlock=f"10.{100 + i}.0.0/16")
    path = tmp_path / "big.csv"
    path.write_text("id\n" + "".join(f"s{i:03d}\n" for i in range(4)))
    result = cli("fleet", "up", "--roster", str(path), state_dir=state_dir)
    assert result.exit_code == 2, result.output
    assert "L-F678F1CE" in result.text and "2 fit" in result.text
    assert "nothing was created" in result.text
    assert fleet_stacks() == []
    assert len(ec2.describe_vpcs()["Vpcs"]) == 3


def test_the_preflight_counts_what_a_half_built_stack_still_needs(hooks, roster, state_dir, calls):
    def refuse_alan(params, **_):
        if "alan@example.edu" in params["body"].values():
            return refuse("AddressLimitExceeded", "The maximum number of addresses has been reached.")
        return None

    hooks.append(("before-call.ec2.AllocateAddress", refuse_alan))
    first = cli("fleet", "up", "--roster", roster, "--no-wait", state_dir=state_dir)
    assert first.exit_code == 1 and "AddressLimitExceeded" in first.text, first.output
    assert "cs101-alan-turing" in fleet_stacks()      # its network exists; no address, no NAT gateway
    hooks.clear()
    # Someone else's addresses fill the emulator's quota of 5: Alan's stack cannot be finished.
    ec2 = boto3.client("ec2", region_name=REGION)
    others = [ec2.allocate_address(Domain="vpc")["AllocationId"] for _ in range(3)]
    calls.clear()
    refused = cli("fleet", "up", "--roster", roster, "--no-wait", state_dir=state_dir)
    assert refused.exit_code == 2, refused.output
    assert "0 new stacks and the rest of 1 half-built one" in refused.text
    assert "5 in use and 1 still to come for half-built stacks" in refused.text
    assert "--quota-code L-0263D0A3 --desired-value 6" in refused.text
    assert [c for c in calls if is_mutating(c[1])] == []
    ec2.release_address(AllocationId=others[0])
    again = cli("fleet", "up", "--roster", roster, "--no-wait", state_dir=state_dir)
    assert again.exit_code == 0, again.output
    assert "0 new stack(s) and the rest of 1 half-built one(s) fit" in again.text
    assert "3 of 3 stack(s) up" in again.text


def test_status_report_cleanup_and_down_see_the_class_by_its_tags(hooks, roster, state_dir, tmp_path):
    assert cli("fleet", "up", "--roster", roster, state_dir=state_dir).exit_code == 0

    status = json.loads(cli("fleet", "status", "--roster", roster, "--json", state_dir=state_dir).stdout)
    assert status["roster"] == "cs101"
    assert [s["health"] for s in status["stacks"]] == ["2/2 healthy"] * 3
    assert all(s["url"].startswith("https://") for s in status["stacks"])

    report = cli("fleet", "report", "--roster", roster, "--format", "csv", state_dir=state_dir)
    assert report.exit_code == 0, report.output
    rows = list(csv.DictReader(io.StringIO(report.stdout)))
    assert [r["email"] for r in rows] == ["ada@example.edu", "alan@example.edu", "grace@example.edu"]
    assert all(r["url"].startswith("https://") and r["created"] and float(r["cost_so_far"]) >= 0 for r in rows)
    markdown = cli("fleet", "report", "--roster", roster, state_dir=state_dir).stdout
    assert "| student | email | stack |" in markdown and "| Ada Lovelace | ada@example.edu |" in markdown

    # cleanup sees the class too; without --yes and a terminal it is a dry run.
    dry = cli("cleanup", "--roster", "cs101", state_dir=state_dir)
    assert dry.exit_code == 0 and "Dry run" in dry.text and "of roster cs101" in dry.text

    down = cli("fleet", "down", "--roster", roster, "--yes", state_dir=state_dir)
    assert down.exit_code == 0, down.output
    assert "0 resources left, $0.00/hour" in down.text
    assert fleet_stacks() == []
    assert not list((tmp_path / "state").glob("cs101-*.json"))


def test_a_bad_roster_is_refused_before_any_call(moto_aws, tmp_path, state_dir, calls):
    path = tmp_path / "bad.csv"
    path.write_text("name,email\nAda,ada@example.edu\n,nobody@example.edu\nBob,not-an-email\n")
    result = cli("fleet", "up", "--roster", str(path), state_dir=state_dir)
    assert result.exit_code == 2, result.output
    assert "line 3" in result.text and "line 4" in result.text
    assert calls == []


# -- the shared rate limiter ----------------------------------------------------------------------

class FakeClock:
    def __init__(self):
        self.now = 0.0
        self.waits: list[float] = []

    def __call__(self):
        return self.now

    def wait(self, seconds):  # the cancel event's wait: time passes, nobody cancels
        self.waits.append(seconds)
        self.now += seconds
        return False


def test_the_limiter_spends_its_burst_then_paces_calls_at_its_rate():
    clock = FakeClock()
    limiter = RateLimiter(10.0, burst=2, clock=clock)
    for _ in range(4):
        limiter.acquire(clock)
    assert clock.waits == pytest.approx([0.1, 0.1])
    assert limiter.calls == 4


def test_a_burst_of_throttled_answers_halves_the_rate_once_for_everyone_and_successes_win_it_back():
    clock = FakeClock()
    limiter = RateLimiter(20.0, clock=clock)
    for _ in range(20):   # every request in flight when the account's bucket ran dry
        limiter.answered("RequestLimitExceeded")
    assert limiter.rate == pytest.approx(10.0) and limiter.throttles == 20
    clock.now += 1.5      # the next burst, a while later: halved again
    limiter.answered("Throttling")
    assert limiter.rate == pytest.approx(5.0) and limiter.throttles == 21
    limiter.answered("InvalidVpcID.NotFound", 400)   # an error, but not throttling: no slowdown
    assert limiter.rate > 5.0
    limiter.answered("InternalError", 503)   # a 503 that names its cause is not throttling either
    assert limiter.rate > 5.0 and limiter.throttles == 21
    clock.now += 1.5
    limiter.answered("503", 503)   # a throttled HEAD: no body, so botocore names it by its status
    assert limiter.rate == pytest.approx(2.9) and limiter.throttles == 22
    clock.now += 1.5
    limiter.answered(None, 429)
    assert limiter.rate == pytest.approx(1.45) and limiter.throttles == 23
    for _ in range(200):
        limiter.answered(None)
    assert limiter.rate == pytest.approx(20.0)
    assert limiter.lowest == pytest.approx(1.45)


def test_a_cancelled_run_stops_waiting_for_a_token():
    limiter = RateLimiter(0.5, burst=1)
    limiter.acquire()
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Interrupted):
        limiter.acquire(cancel)
