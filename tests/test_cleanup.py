"""`list`, `cleanup` and `reap` through the CLI, on moto with the strict fixture: several stacks
(an old one, an expired one, a fresh one) and an untagged look-alike; each selector removes
exactly what it selects, with or without state files, after an interruption, and never in an
account the guard does not allow."""

from __future__ import annotations

import json
import os
import re
import signal
import threading
from datetime import datetime, timedelta, timezone

import boto3
import pytest

from provisioner.commands import cleanup as cleanup_module
from provisioner.shape.config import StackConfig
from provisioner.engine.context import TAG_EXPIRES_AT, TAG_OWNER
from provisioner.commands.runner import Connection

from stacks import ACCOUNT, REGION, ZONES, count_tagged, make_session, tagged_leftovers
from test_cli import cli, inject, refuse, state_dir  # noqa: F401  (fixtures)

STACKS = ("old-a", "expired-b", "fresh-c")
OWNER = f"arn:aws:iam::{ACCOUNT}:user/alice"


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture
def strict_cli(strict, monkeypatch):
    """Every context the CLI makes talks through a session with the strict rules."""
    original = Connection.context

    def context(self, stack, region, config, reporter):
        ctx = original(self, stack, region, config, reporter)
        ctx._session_factory = lambda: make_session(strict)
        return ctx

    monkeypatch.setattr(Connection, "context", context)
    return strict


def build(make_stack, monkeypatch, name, created: datetime, expires_at: str | None = None, owner=OWNER):
    """A whole stack, as if built at `created` (its created-at tags say so)."""
    monkeypatch.setattr("provisioner.engine.context.utc_now", lambda: stamp(created))
    stack = make_stack(name, owner=owner, config=StackConfig(zones=list(ZONES), expires_at=expires_at))
    results = stack.up()
    assert all(r.ok for r in results), [(r.name, r.detail) for r in results if not r.ok]
    return stack


@pytest.fixture
def lab(make_stack, monkeypatch, strict_cli, tmp_path):
    """Three stacks and an untagged look-alike: old-a (5h old, no expiry), expired-b (1h old,
    expired 10 minutes ago), fresh-c (just made, expires in 4h)."""
    now = datetime.now(timezone.utc).replace(microsecond=0)
    with monkeypatch.context() as m:
        build(make_stack, m, "old-a", now - timedelta(hours=5))
        build(make_stack, m, "expired-b", now - timedelta(hours=1), stamp(now - timedelta(minutes=10)))
        build(make_stack, m, "fresh-c", now, stamp(now + timedelta(hours=4)))
    ec2 = boto3.client("ec2", region_name=REGION)
    # Looks like a stack by name, but carries none of the tool's tags: never the tool's to delete.
    vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16", TagSpecifications=[
        {"ResourceType": "vpc", "Tags": [{"Key": "Name", "Value": "old-a-vpc"}, {"Key": "stack", "Value": "old-a"}]}])
    subnet = ec2.create_subnet(VpcId=vpc["Vpc"]["VpcId"], CidrBlock="10.9.1.0/24", AvailabilityZone=ZONES[0])
    eip = ec2.allocate_address(Domain="vpc")
    volume = ec2.create_volume(AvailabilityZone=ZONES[0], Size=8, VolumeType="gp3")
    nat_eip = ec2.allocate_address(Domain="vpc")
    nat = ec2.create_nat_gateway(SubnetId=subnet["Subnet"]["SubnetId"], AllocationId=nat_eip["AllocationId"])
    return {"state_dir": str(tmp_path / "state"), "vpc": vpc["Vpc"]["VpcId"], "eip": eip["AllocationId"],
            "volume": volume["VolumeId"], "nat": nat["NatGateway"]["NatGatewayId"], "strict": strict_cli}


def remaining() -> dict[str, int]:
    return {name: sum(count_tagged(name).values()) for name in STACKS}


def look_alike_intact(lab) -> bool:
    ec2 = boto3.client("ec2", region_name=REGION)
    vpcs = {v["VpcId"] for v in ec2.describe_vpcs()["Vpcs"]}
    addresses = {a["AllocationId"] for a in ec2.describe_addresses()["Addresses"]}
    volumes = {v["VolumeId"] for v in ec2.describe_volumes()["Volumes"]}
    return lab["vpc"] in vpcs and lab["eip"] in addresses and lab["volume"] in volumes


def no_order_refusals(strict):
    from strict_base import ORDER

    return [r for r in strict.refusals if r[2] == ORDER]


# -- selection ---------------------------------------------------------------------------------

@pytest.mark.parametrize("selector, gone", [
    (["--older-than", "3h"], {"old-a"}),
    (["--expired"], {"expired-b"}),
    (["--stack", "fresh-c"], {"fresh-c"}),
    (["--stack", "fresh-c", "--stack", "old-a"], {"fresh-c", "old-a"}),
    (["--older-than", "30m", "--expired"], {"expired-b"}),
    (["--all"], set(STACKS)),
])
def test_cleanup_removes_exactly_the_selected_stacks(lab, selector, gone):
    before = remaining()
    assert all(before.values()), before
    result = cli("cleanup", *selector, "--yes", state_dir=lab["state_dir"])
    assert result.exit_code == 0, result.output
    after = remaining()
    for name in STACKS:
        assert (after[name] == 0) == (name in gone), (name, after)
        if name not in gone:
            assert after[name] == before[name]
    assert "0 resources left, $0.00/hour" in result.text
    assert look_alike_intact(lab)
    assert not no_order_refusals(lab["strict"])
    for name in gone:
        # The state file of a stack built here is used and removed, as `down` does.
        assert not os.path.exists(os.path.join(lab["state_dir"], f"{name}.json"))


def test_dry_run_deletes_nothing_and_says_what_and_what_it_costs(lab):
    result = cli("cleanup", "--older-than", "3h", state_dir=lab["state_dir"])
    assert result.exit_code == 0, result.output
    assert all(remaining().values())
    text = result.text
    assert re.search(r"old-a \(us-east-1; owner user/alice; 5h [01]m old; no expiry\): 31 resource\(s\), "
                     r"\$0\.11/hour stops", text), text
    assert "expired-b" not in text.split("Untagged")[0]
    assert "nat_gateway" in text and "load_balancer" in text and "auto_scaling_group" in text
    assert "/day) stops when they go" in text
    assert "Dry run: nothing was deleted. Run again with --yes" in text
    # The untagged look-alike's costly parts are reported, never deleted.
    untagged = text.split("Untagged")[1]
    assert lab["eip"] in untagged and lab["volume"] in untagged and lab["nat"] in untagged
    assert look_alike_intact(lab)


def test_cleanup_without_a_selector_is_refused(lab):
    result = cli("cleanup", "--yes", state_dir=lab["state_dir"])
    assert result.exit_code == 2
    assert "say which stacks to clean up" in result.text
    assert all(remaining().values())


def test_cleanup_all_asks_for_the_account_id(lab, monkeypatch):
    monkeypatch.setattr(cleanup_module, "interactive", lambda: True)
    wrong = cli("cleanup", "--all", state_dir=lab["state_dir"], input="210987654321\n")
    assert wrong.exit_code == 2 and "the account id did not match; nothing was deleted" in wrong.text
    assert all(remaining().values())
    right = cli("cleanup", "--all", state_dir=lab["state_dir"], input=f"{ACCOUNT}\n")
    assert right.exit_code == 0, right.output
    assert "Type the account id" in right.text
    assert not any(remaining().values())
    assert look_alike_intact(lab)


def test_cleanup_with_no_state_files_at_all(lab, tmp_path):
    empty = str(tmp_path / "elsewhere")
    result = cli("cleanup", "--all", "--yes", state_dir=empty)
    assert result.exit_code == 0, result.output
    assert not any(remaining().values())
    for name in STACKS:
        assert tagged_leftovers(name) == []
    assert look_alike_intact(lab)
    # The stacks' own state directory was not the one used: its files are left to the user.
    assert os.path.exists(os.path.join(lab["state_dir"], "old-a.json"))


def test_cleanup_interrupted_then_run_again_finishes(lab, inject):
    fired = threading.Event()

    def ctrl_c(**_):
        if not fired.is_set():
            fired.set()
            os.kill(os.getpid(), signal.SIGINT)  # delivered to the main thread, as a real Ctrl-C

    inject("before-call.ec2.DeleteNatGateway", ctrl_c)
    first = cli("cleanup", "--all", "--yes", state_dir=lab["state_dir"])
    assert fired.is_set()
    assert first.exit_code == 130, first.output
    assert "interrupted" in first.text
    assert any(remaining().values())  # it stopped part-way
    second = cli("cleanup", "--all", "--yes", state_dir=lab["state_dir"])
    assert second.exit_code == 0, second.output
    assert not any(remaining().values())
    assert "0 resources left, $0.00/hour" in second.text
    assert look_alike_intact(lab)


def test_what_cannot_be_deleted_is_listed_with_the_aws_error(lab, inject):
    def deny(params, **_):
        return refuse("UnauthorizedOperation", "You are not authorized to perform this operation.")

    inject("before-call.ec2.DeleteInternetGateway", deny)
    result = cli("cleanup", "--stack", "old-a", "--yes", state_dir=lab["state_dir"])
    assert result.exit_code == 1, result.output
    text = result.text
    assert "old-a (us-east-1):" in text and "resource(s) left" in text
    assert "internet_gateway" in text and "UnauthorizedOperation" in text
    assert "0 resources left" not in text
    assert remaining()["expired-b"] and remaining()["fresh-c"]


# -- reap ----------------------------------------------------------------------------------------

def test_reap_deletes_only_expired_stacks_one_line_each(lab):
    result = cli("reap", state_dir=lab["state_dir"])
    assert result.exit_code == 0, result.output
    assert remaining()["expired-b"] == 0 and remaining()["old-a"] and remaining()["fresh-c"]
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert lines[0].startswith("expired-b (us-east-1): deleted"), lines
    assert lines[-1].startswith("0 resources left, $0.00/hour"), lines
    assert len(lines) == 2, lines
    again = cli("reap", state_dir=lab["state_dir"])
    assert again.exit_code == 0 and "no expired stacks" in again.stdout


def test_reap_exits_non_zero_when_something_stays(lab, inject):
    inject("before-call.ec2.DeleteVpc", lambda **_: refuse("UnauthorizedOperation", "not authorized"))
    result = cli("reap", state_dir=lab["state_dir"])
    assert result.exit_code == 1, result.output
    assert "expired-b (us-east-1): 1 resource(s) left" in result.stdout
    assert "vpc vpc-" in result.stdout and "UnauthorizedOperation" in result.stdout


# -- the account guard -----------------------------------------------------------------------------

@pytest.mark.parametrize("command", [["cleanup", "--all", "--yes"], ["reap"], ["up", "--yes"],
                                     ["down", "--yes", "--stack", "old-a"]])
def test_the_guard_refuses_other_accounts(lab, monkeypatch, command):
    monkeypatch.setenv("PROVISION_ALLOWED_ACCOUNTS", "111111111111")
    before = remaining()
    result = cli(*command, state_dir=lab["state_dir"])
    assert result.exit_code == 2, result.output
    assert f"account {ACCOUNT}: it is not in the allowed accounts (111111111111" in result.text
    assert remaining() == before
    assert tagged_leftovers("stylesphere") == []


def test_the_guard_lets_allowed_accounts_through(lab, monkeypatch):
    monkeypatch.setenv("PROVISION_ALLOWED_ACCOUNTS", f"111111111111,{ACCOUNT}")
    result = cli("cleanup", "--expired", "--yes", state_dir=lab["state_dir"])
    assert result.exit_code == 0, result.output
    assert remaining()["expired-b"] == 0


# -- list ------------------------------------------------------------------------------------------

def test_list_shows_every_stack_from_the_tags(lab, tmp_path):
    # No state at all: everything comes from AWS.
    result = cli("list", "--json", state_dir=str(tmp_path / "none"))
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    stacks = {s["stack"]: s for s in data["stacks"]}
    assert set(stacks) == set(STACKS)
    assert stacks["old-a"]["owner"] == OWNER
    assert stacks["old-a"]["expires_at"] is None and not stacks["old-a"]["expired"]
    assert stacks["expired-b"]["expired"] and not stacks["fresh-c"]["expired"]
    assert 5 * 3600 - 60 <= stacks["old-a"]["age_seconds"] <= 5 * 3600 + 600
    assert stacks["old-a"]["resources"] == stacks["fresh-c"]["resources"] >= 25
    assert stacks["old-a"]["cost_per_hour"] > 0 and stacks["old-a"]["spent"] > stacks["fresh-c"]["spent"]
    table = cli("list", state_dir=str(tmp_path / "none"))
    assert table.exit_code == 0
    assert "user/alice" in table.text and "3 stack(s)" in table.text
    assert "stack 'expired-b' in us-east-1 expired 1" in table.text and "and still bills" in table.text


def test_up_and_status_show_the_cost_and_warn_about_expired_stacks(lab):
    state = lab["state_dir"]
    status = cli("status", "--stack", "fresh-c", state_dir=state)
    assert status.exit_code == 0, status.output
    assert "This stack costs about $" in status.text and "It expires in 3h" in status.text
    assert "stack 'expired-b' in us-east-1 expired" in status.text
    as_json = json.loads(cli("status", "--stack", "fresh-c", "--json", state_dir=state).stdout)
    assert as_json["cost"]["per_hour"] > 0 and as_json["expired"] is False


def test_up_with_ttl_stamps_every_resource_and_extends_it(moto_aws, state_dir):
    result = cli("up", "--yes", "--ttl", "4h", "--stack", "lab-t", state_dir=state_dir)
    assert result.exit_code == 0, result.output
    assert "It expires in 3h 59m" in result.text or "It expires in 4h" in result.text
    assert "This stack costs about $" in result.text and "/day) while it is up" in result.text
    from provisioner.engine.context import RunContext
    from provisioner.account.inventory import scan

    def expiries():
        ctx = RunContext(stack="lab-t", region=REGION, config=StackConfig())
        ctx.account = ACCOUNT
        return {(i.kind, i.id): i.tags.get(TAG_EXPIRES_AT) for i in scan(ctx) if i.stack == "lab-t"}

    first = expiries()
    assert len(set(first.values())) == 1 and None not in first.values(), sorted(first.items(), key=str)
    kinds = {kind for kind, _ in first}
    assert {"vpc", "nat_gateway", "load_balancer", "auto_scaling_group", "launch_template", "instance",
            "iam_role", "bucket", "certificate", "target_group"} <= kinds
    plan = cli("plan", "--ttl", "8h", "--stack", "lab-t", state_dir=state_dir)
    assert "set tag(s) provision:expires-at" in plan.text
    again = cli("up", "--yes", "--ttl", "8h", "--stack", "lab-t", state_dir=state_dir)
    assert again.exit_code == 0, again.output
    second = expiries()
    assert set(second) == set(first) and len(set(second.values())) == 1
    assert set(second.values()) != set(first.values())
    # The owner is who created it.
    ctx = RunContext(stack="lab-t", region=REGION, config=StackConfig())
    ctx.account = ACCOUNT
    assert {i.tags.get(TAG_OWNER) for i in scan(ctx) if i.stack == "lab-t" and i.kind == "vpc"} == {
        f"arn:aws:sts::{ACCOUNT}:user/moto"}  # what moto's STS answers
    # A later `up` without --ttl keeps the expiry.
    kept = cli("up", "--yes", "--stack", "lab-t", "--no-wait", state_dir=state_dir)
    assert kept.exit_code == 0 and expiries() == second


def test_all_regions_finds_and_cleans_each_region_apart(moto_aws, make_stack, tmp_path):
    # moto's strict fixture models one region; this test is about attribution across regions.
    europe = make_stack("lab-eu", region="eu-west-1", config=StackConfig(zones=["eu-west-1a", "eu-west-1b"]))
    europe.strict = None
    assert all(r.ok for r in europe.up())
    home = make_stack("lab-us")
    home.strict = None
    assert all(r.ok for r in home.up())
    state = str(tmp_path / "state")
    one_region = json.loads(cli("list", "--json", state_dir=state).stdout)
    assert {(s["stack"], s["region"]) for s in one_region["stacks"]} == {("lab-us", REGION)}
    listed = json.loads(cli("list", "--all-regions", "--json", state_dir=state).stdout)
    stacks = {(s["stack"], s["region"]): s for s in listed["stacks"]}
    assert set(stacks) == {("lab-us", REGION), ("lab-eu", "eu-west-1")}
    # IAM and S3 are global; each stack's role, profile and bucket count once, in its region.
    assert stacks[("lab-us", REGION)]["resources"] == stacks[("lab-eu", "eu-west-1")]["resources"]
    result = cli("cleanup", "--all-regions", "--stack", "lab-eu", "--yes", state_dir=state)
    assert result.exit_code == 0, result.output
    assert "0 resources left, $0.00/hour" in result.text
    assert tagged_leftovers("lab-eu", region="eu-west-1") == []
    assert sum(count_tagged("lab-us").values()) > 20


def test_a_region_that_cannot_be_scanned_is_said_in_words(moto_aws, state_dir, inject):
    inject("before-call.ec2.DescribeVpcs", lambda **_: refuse("InvalidParameterValue", "emulated failure"))
    listed = cli("list", state_dir=state_dir)
    assert listed.exit_code == 1, listed.output
    assert "cannot scan us-east-1: DescribeVpcs failed with InvalidParameterValue" in listed.text
    cleaned = cli("cleanup", "--all", "--yes", state_dir=state_dir)
    assert cleaned.exit_code == 2 and "could not read every region; nothing was deleted" in cleaned.text


@pytest.mark.parametrize("args, words", [
    (["up", "--yes", "--ttl", "5x"], "--ttl '5x' is not a duration"),
    (["up", "--yes", "--ttl", "0h"], "must be longer than zero"),
    (["up", "--yes", "--ttl", "4h", "--expires-at", "2099-01-01T00:00Z"], "give either --ttl or --expires-at"),
    (["up", "--yes", "--expires-at", "2020-01-01T00:00Z"], "is in the past"),
    (["up", "--yes", "--expires-at", "soon"], "is not a time"),
    (["cleanup", "--older-than", "3"], "'3' is not a duration"),
    (["cleanup", "--stack", "Bad_Name"], "invalid stack name 'Bad_Name'"),
    (["cleanup", "--stack", "lab-a", "--all"], "give --stack or --all, not both"),
    (["cleanup", "--parallel", "0", "--all"], "--parallel"),
])
def test_bad_cleanup_and_expiry_options_change_nothing(moto_aws, state_dir, args, words):
    result = cli(*args, state_dir=state_dir)
    assert result.exit_code == 2, result.output
    assert words in result.text, result.text
    assert tagged_leftovers("stylesphere") == []
    assert not os.path.exists(os.path.join(state_dir, "stylesphere.json"))
