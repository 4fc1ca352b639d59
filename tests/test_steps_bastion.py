"""The bastion on moto with the strict fixture: the key pair (private half local, mode 0600,
public half imported), the bastion and web security groups' SSH rules, the instance in public
subnet 1 with a public address and the key, the launch template's KeyName; a second `up` that
changes nothing; a new --ssh-cidr converged; a lost private key replacing the key pair (and the
bastion that booted with the old one); the bastion turned off and retired; `down` (twice), with
and without state; the account scan and its price; and the config's --ssh-cidr checks."""

from __future__ import annotations

import dataclasses
import os
import stat

import boto3
import pytest
from botocore.exceptions import ClientError

from provisioner.shape.config import StackConfig, normalize_ssh_cidr
from provisioner.engine.context import TAG_STACK, TAG_STEP
from provisioner.engine.errors import ConfigError
from provisioner.account.inventory import scan
from provisioner.account.pricing import estimate, load_packaged
from provisioner.engine.registry import build_steps

from stacks import ACCOUNT, REGION, ZONES, make_session, outcomes, tagged_leftovers
from strict_base import _Http

CIDR = "203.0.113.7/32"
BASTION_STEPS = ("key-pair", "bastion-security-group", "bastion")


def bastion_config(**more) -> StackConfig:
    return StackConfig(zones=list(ZONES), bastion=True, ssh_cidr=CIDR, **more)


def _by_name(results):
    return {r.name: r for r in results}


def _ok(results):
    assert all(r.ok for r in results), [(r.name, r.outcome, r.detail) for r in results if not r.ok]
    return _by_name(results)


def _tags(pairs):
    return {t["Key"]: t["Value"] for t in pairs or []}


def _ec2():
    return boto3.client("ec2", region_name=REGION)


def _group(group_id):
    return _ec2().describe_security_groups(GroupIds=[group_id])["SecurityGroups"][0]


def _rules(group):
    """(port, source) of every ingress rule: a CIDR or a group id."""
    out = set()
    for p in group["IpPermissions"]:
        assert p["IpProtocol"] == "tcp" and p["FromPort"] == p["ToPort"]
        out |= {(p["FromPort"], r["CidrIp"]) for r in p.get("IpRanges", [])}
        out |= {(p["FromPort"], r["CidrIpv6"]) for r in p.get("Ipv6Ranges", [])}
        out |= {(p["FromPort"], g["GroupId"]) for g in p.get("UserIdGroupPairs", [])}
    return out


def _key_pairs(name="stylesphere-ssh"):
    return _ec2().describe_key_pairs(Filters=[{"Name": "key-name", "Values": [name]}],
                                     IncludePublicKey=True)["KeyPairs"]


def _instance(instance_id):
    return _ec2().describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]


def _latest_template_data(template_id):
    return _ec2().describe_launch_template_versions(
        LaunchTemplateId=template_id, Versions=["$Latest"])["LaunchTemplateVersions"][0]["LaunchTemplateData"]


def _order_refusals(strict):
    return [r for r in strict.refusals if r[2] == "order"]


@pytest.fixture
def built(make_stack, strict):
    stack = make_stack(config=bastion_config())
    results = _ok(stack.up())
    assert {results[n].outcome for n in BASTION_STEPS} == {"created"}
    assert _order_refusals(strict) == []
    return stack


# -- up ------------------------------------------------------------------------------------------

def test_up_with_bastion_by_value(built):
    resources = built.last_ctx.resources
    keys = built.keys

    # The private key: in the state directory, readable by its owner alone; EC2 has its public half.
    assert keys.private_key_path.parent == built.state_file.path.parent
    assert stat.S_IMODE(os.stat(keys.private_key_path).st_mode) == 0o600
    (key_pair,) = _key_pairs()
    assert key_pair["KeyPairId"] == resources["key-pair"].id
    assert key_pair["PublicKey"].split()[:2] == keys.public_key().split()[:2]
    assert _tags(key_pair["Tags"])[TAG_STEP] == "key-pair" and _tags(key_pair["Tags"])["Name"] == "stylesphere-key-pair"

    # SSH to the bastion from the one CIDR; to the app instances from the bastion's group only.
    bastion_group = resources["bastion-security-group"].id
    assert _rules(_group(bastion_group)) == {(22, CIDR)}
    web = _group(resources["web-security-group"].id)
    assert _rules(web) == {(3000, resources["alb-security-group"].id), (5000, resources["alb-security-group"].id),
                           (22, bastion_group)}
    assert web["Description"] == "App instances: frontend and backend ports from the load balancer only"

    # The bastion: running in public subnet 1, with a public address, the key and the group.
    bastion = resources["bastion"]
    instance = _instance(bastion.id)
    assert instance["State"]["Name"] == "running"
    assert instance["SubnetId"] == resources["public-subnet-1"].id
    assert instance["PublicIpAddress"] and instance["PublicIpAddress"] == bastion.attrs["public_ip"]
    assert instance["KeyName"] == "stylesphere-ssh" and instance["InstanceType"] == "t3.micro"
    assert [g["GroupId"] for g in instance["NetworkInterfaces"][0]["Groups"]] == [bastion_group]
    assert instance["MetadataOptions"]["HttpTokens"] == "required"
    assert instance["MetadataOptions"]["HttpPutResponseHopLimit"] == 1
    assert _tags(instance["Tags"])[TAG_STEP] == "bastion" and _tags(instance["Tags"])[TAG_STACK] == "stylesphere"
    root = next(m for m in instance["BlockDeviceMappings"] if m["DeviceName"] == "/dev/sda1")
    volume = _ec2().describe_volumes(VolumeIds=[root["Ebs"]["VolumeId"]])["Volumes"][0]
    assert (volume["VolumeType"], volume["Size"], volume["Encrypted"]) == ("gp3", 8, True)
    assert root["Ebs"]["DeleteOnTermination"] is True
    assert _tags(volume["Tags"])[TAG_STEP] == "bastion"
    ami = boto3.client("ssm", region_name=REGION).get_parameter(
        Name="/aws/service/canonical/ubuntu/server/24.04/stable/current/amd64/hvm/ebs-gp3/ami-id")["Parameter"]["Value"]
    assert instance["ImageId"] == ami

    # The app instances boot with the key too.
    assert _latest_template_data(resources["launch-template"].id)["KeyName"] == "stylesphere-ssh"

    # Tagged at creation, never by a later call; outputs and status say where it is.
    assert "CreateTags" not in [op for _, op in built.last_ctx.calls]
    outputs = built.state_file.load_for(ACCOUNT, REGION).outputs
    assert outputs["bastion_instance_id"] == bastion.id and outputs["bastion_public_ip"] == instance["PublicIpAddress"]
    assert outputs["bastion_private_ip"] == instance["PrivateIpAddress"]
    assert outputs["key_pair_name"] == "stylesphere-ssh"
    status = _by_name(built.status())
    assert status["bastion"].detail == f"{bastion.id} {instance['PublicIpAddress']} (t3.micro)"
    assert status["bastion-security-group"].detail == f"tcp/22 from {CIDR}"


def test_second_up_changes_nothing(built):
    results = _ok(built.up()).values()
    assert {r.outcome for r in results} == {"kept"}, [(r.name, r.detail) for r in results if r.outcome != "kept"]
    assert built.mutating_calls() == []
    assert {r.outcome for r in built.plan()} == {"no change"}


def test_a_new_ssh_cidr_converges_the_rule_and_keeps_the_bastion(built, strict):
    bastion = built.last_ctx.resources["bastion"].id
    group = built.last_ctx.resources["bastion-security-group"].id
    wider = dataclasses.replace(built.config, ssh_cidr="198.51.100.0/24")

    planned = _by_name(built.engine(config=wider).plan())
    assert planned["bastion-security-group"].changes == ["allow tcp/22 from 198.51.100.0/24",
                                                         f"remove rule tcp/22 from {CIDR}"]
    assert {r.name for r in planned.values() if r.outcome != "no change"} == {"bastion-security-group"}

    results = _ok(built.up(config=wider))
    assert results["bastion-security-group"].outcome == "updated"
    assert {r.name for r in results.values() if r.outcome != "kept"} == {"bastion-security-group"}
    assert _rules(_group(group)) == {(22, "198.51.100.0/24")}
    assert built.last_ctx.resources["bastion"].id == bastion
    assert _order_refusals(strict) == []

    again = _ok(built.up())   # the state remembers the new CIDR
    assert {r.outcome for r in again.values()} == {"kept"}
    assert built.mutating_calls() == []


@pytest.mark.parametrize("loss", ["is missing", "does not match"])
def test_a_lost_private_key_replaces_the_key_pair_and_the_bastion(built, strict, loss):
    keys = built.keys
    old_pair, old_bastion = built.last_ctx.resources["key-pair"].id, built.last_ctx.resources["bastion"].id
    if loss == "is missing":
        keys.private_key_path.unlink()
    else:
        keys.private_key_path.unlink()
        keys.generate()   # another key, not the one EC2 has

    planned = _by_name(built.plan())
    assert planned["key-pair"].changes == [
        f"replace key pair stylesphere-ssh: the private key in {keys.private_key_path} {loss}"]
    assert planned["bastion"].changes == [
        "replace the bastion (key pair stylesphere-ssh was replaced after the bastion booted with the old key)"]
    assert built.mutating_calls() == []

    results = _ok(built.up())
    assert results["key-pair"].outcome == "updated" and results["bastion"].outcome == "updated"
    (key_pair,) = _key_pairs()
    assert key_pair["KeyPairId"] != old_pair and key_pair["KeyPairId"] == results["key-pair"].resource_id
    assert key_pair["PublicKey"].split()[:2] == keys.public_key().split()[:2]
    assert stat.S_IMODE(os.stat(keys.private_key_path).st_mode) == 0o600
    new_bastion = results["bastion"].resource_id
    assert new_bastion != old_bastion
    assert _instance(old_bastion)["State"]["Name"] == "terminated"
    assert _instance(new_bastion)["State"]["Name"] == "running" and _instance(new_bastion)["KeyName"] == "stylesphere-ssh"
    # Same key pair name: the launch template needs no new version.
    assert results["launch-template"].outcome == "kept"
    assert _order_refusals(strict) == []

    again = _ok(built.up())
    assert {r.outcome for r in again.values()} == {"kept"}, [(r.name, r.detail) for r in again.values()]
    assert built.mutating_calls() == []


def test_a_bastion_terminated_by_hand_is_launched_again_with_a_fresh_client_token(make_stack, strict):
    """AWS answers a replayed ClientToken with the instance it made the first time, even if that
    one is terminated since (moto does not): the step must not adopt it."""
    launched: dict[str, str] = {}   # client token -> the instance it launched
    replayed = []

    def replay(params, context, **_):
        token = context["client_token"] = params["body"].get("ClientToken")
        if token in launched:
            replayed.append(launched[token])
            reservation = _ec2().describe_instances(InstanceIds=[launched[token]])["Reservations"][0]
            return _Http(200), {**reservation, "ResponseMetadata": {"HTTPStatusCode": 200}}
        return None

    def remember(parsed, context, **_):
        if context.get("client_token") and parsed.get("Instances"):
            launched.setdefault(context["client_token"], parsed["Instances"][0]["InstanceId"])

    stack = make_stack(config=bastion_config(), hooks=[("before-call.ec2.RunInstances", replay),
                                                       ("after-call.ec2.RunInstances", remember)])
    _ok(stack.up(only=["bastion"]))
    first = stack.last_ctx.resources["bastion"].id
    _ec2().terminate_instances(InstanceIds=[first])

    results = _ok(stack.up(only=["bastion"]))
    assert results["bastion"].outcome == "created"
    second = results["bastion"].resource_id
    assert second != first and _instance(second)["State"]["Name"] == "running"
    # The stack's token answered the terminated one; the next token launched the new one.
    assert replayed == [first]
    assert set(launched.values()) == {first, second}


def test_without_a_key_store_the_key_pair_is_refused_with_a_hint(make_stack):
    stack = make_stack(config=bastion_config())
    stack.keys = None
    results = _by_name(stack.up(only=["key-pair"]))
    assert results["key-pair"].outcome == "failed"
    assert isinstance(results["key-pair"].error, ConfigError)
    assert "needs a state directory" in results["key-pair"].detail
    assert _key_pairs() == []


# -- off, down -----------------------------------------------------------------------------------

def test_turning_the_bastion_off_retires_it_in_order(built, strict):
    resources = built.last_ctx.resources
    bastion_group, bastion = resources["bastion-security-group"].id, resources["bastion"].id
    template = resources["launch-template"].id
    off = dataclasses.replace(built.config, bastion=False)

    planned = _by_name(built.engine(config=off).plan())
    assert {n: planned[n].outcome for n in BASTION_STEPS} == {n: "delete" for n in BASTION_STEPS}
    assert planned["web-security-group"].changes == [f"remove rule tcp/22 from {bastion_group}"]
    assert planned["launch-template"].changes[0] == "key pair stylesphere-ssh -> none"

    results = _ok(built.up(config=off))
    # The web group lets go of the bastion's group first (AWS refuses to delete a group another
    # group's rule names), then the retired steps go in the reversed graph.
    assert results["web-security-group"].changes == [f"remove rule tcp/22 from {bastion_group}"]
    assert {results[n].outcome for n in BASTION_STEPS} == {"deleted"}
    assert _order_refusals(strict) == []
    assert _instance(bastion)["State"]["Name"] == "terminated"
    assert _key_pairs() == [] and not built.keys.exists()
    with pytest.raises(ClientError):
        _group(bastion_group)
    data = _latest_template_data(template)
    assert "KeyName" not in data
    assert results["auto-scaling-group"].changes[0].endswith("version 1 -> " + template + " version 2")
    assert results["auto-scaling-group"].changes[1].startswith("instance refresh started to version 2: i-")
    assert results["auto-scaling-group"].changes[1].count("on version 1") == 2

    again = _ok(built.up())
    assert {r.outcome for r in again.values()} == {"kept"}
    assert built.mutating_calls() == []


def test_down_deletes_the_bastion_its_key_and_group_then_down_twice(built, strict):
    keys = built.keys
    keys.known_hosts_path.write_text("54.0.0.1 ssh-ed25519 AAAA\n")
    bastion = built.last_ctx.resources["bastion"].id
    strict.delays.instance_terminate = 0.3
    results = _ok(built.down())
    assert {results[n].outcome for n in BASTION_STEPS} == {"deleted"}
    assert _order_refusals(strict) == []
    assert _instance(bastion)["State"]["Name"] == "terminated"
    assert _key_pairs() == []
    assert not keys.private_key_path.exists() and not keys.known_hosts_path.exists()
    assert tagged_leftovers("stylesphere") == []

    again = built.down()
    assert set(outcomes(again).values()) == {"absent"}
    assert built.mutating_calls() == []


def test_down_without_state_finds_the_bastion_and_key_pair_by_tags(built, strict):
    built.state_file.remove()
    results = _ok(built.down())
    assert {results[n].outcome for n in BASTION_STEPS} == {"deleted"}
    assert _key_pairs() == [] and tagged_leftovers("stylesphere") == []
    assert _order_refusals(strict) == []


def test_a_stack_without_bastion_has_no_key_and_no_extra_steps(make_stack):
    config = StackConfig(zones=list(ZONES))
    names = set(build_steps(config))
    assert not names & set(BASTION_STEPS)
    assert set(build_steps(config.superset())) >= set(BASTION_STEPS)
    stack = make_stack(config=config)
    resources = _ok(stack.up(only=["launch-template"]))
    ctx = stack.last_ctx
    assert "key-pair" not in resources and "bastion" not in resources
    assert "KeyName" not in _latest_template_data(ctx.resources["launch-template"].id)
    assert 22 not in {port for port, _ in _rules(_group(ctx.resources["web-security-group"].id))}
    assert _ec2().describe_key_pairs()["KeyPairs"] == []
    assert not stack.keys.exists()


# -- the account scan and its price -----------------------------------------------------------------

def test_scan_finds_the_key_pair_and_the_bastion_and_prices_its_address(built):
    from provisioner.engine.context import RunContext

    ctx = RunContext(stack="whoever", region=REGION, config=StackConfig(), session_factory=lambda: make_session())
    ctx.account = ACCOUNT
    found = [f for f in scan(ctx) if f.stack == "stylesphere"]
    (key_pair,) = [f for f in found if f.kind == "key_pair"]
    assert key_pair.id == built.last_ctx.resources["key-pair"].id and key_pair.step == "key-pair"
    assert key_pair.created is not None
    (bastion,) = [f for f in found if f.kind == "instance" and f.step == "bastion"]
    public_ip = built.last_ctx.resources["bastion"].attrs["public_ip"]
    assert bastion.detail == {"instance_type": "t3.micro", "state": "running", "public_ip": public_ip}
    assert [f.detail for f in found if f.kind == "instance" and f.step != "bastion"] == [
        {"instance_type": "t3.micro", "state": "running"}] * 2

    book = load_packaged()
    prices = book.region(REGION)
    cost = estimate(found, REGION, book)
    lines = {line.label: line.quantity for line in cost.lines}
    assert lines["EC2 t3.micro"] == 3
    assert lines["public IPv4 address (instance)"] == 1
    with_bastion = cost.hourly
    without = estimate([f for f in found if f.step != "bastion"], REGION, book).hourly
    assert with_bastion - without == pytest.approx(
        prices.ec2_hour["t3.micro"] + prices.public_ipv4_hour + 8 * prices.ebs_gb_month["gp3"] / 730)


# -- the strict fixture itself ----------------------------------------------------------------------

def test_strict_rules_refuse_what_aws_refuses(built, strict):
    """A live bastion holds its group and subnet and keeps the internet gateway attached;
    RunInstances refuses an unknown key pair."""
    resources = built.last_ctx.resources
    ec2 = make_session(strict).client("ec2")
    with pytest.raises(ClientError, match="DependencyViolation"):
        ec2.delete_security_group(GroupId=resources["bastion-security-group"].id)
    with pytest.raises(ClientError, match="mapped public address"):
        ec2.detach_internet_gateway(InternetGatewayId=resources["internet-gateway"].id,
                                    VpcId=resources["vpc"].id)
    with pytest.raises(ClientError, match="InvalidKeyPair.NotFound"):
        ec2.run_instances(ImageId=_instance(resources["bastion"].id)["ImageId"], InstanceType="t3.micro",
                          MinCount=1, MaxCount=1, KeyName="nobody-ssh", SubnetId=resources["public-subnet-1"].id)
    assert [r[:2] for r in strict.refusals] == [("DeleteSecurityGroup", "DependencyViolation"),
                                               ("DetachInternetGateway", "DependencyViolation"),
                                               ("RunInstances", "InvalidKeyPair.NotFound")]
    strict.refusals.clear()  # made on purpose here


# -- the configuration -------------------------------------------------------------------------------

@pytest.mark.parametrize("given, expected", [
    ("203.0.113.7", "203.0.113.7/32"), (" 203.0.113.7/32 ", "203.0.113.7/32"), ("10.0.0.0/8", "10.0.0.0/8"),
    (None, None)])
def test_ssh_cidr_is_normalised(given, expected):
    assert normalize_ssh_cidr(given) == expected


@pytest.mark.parametrize("given, message, hint", [
    ("203.0.113.7/24", "has host bits set", "--ssh-cidr 203.0.113.0/24"),
    ("2001:db8::1", "is IPv6", "curl https://checkip.amazonaws.com"),
    ("somewhere", "invalid --ssh-cidr", "--ssh-cidr 203.0.113.7/32"),
    ("203.0.113.7/33", "invalid --ssh-cidr", "--ssh-cidr 203.0.113.7/32")])
def test_bad_ssh_cidr_is_a_config_error(given, message, hint):
    with pytest.raises(ConfigError, match=message) as raised:
        normalize_ssh_cidr(given)
    assert hint in raised.value.hint


def test_bastion_without_ssh_cidr_refuses_to_guess():
    with pytest.raises(ConfigError, match="refusing to guess 0.0.0.0/0") as raised:
        StackConfig(bastion=True).validate()
    assert raised.value.hint == "--ssh-cidr 203.0.113.7/32 (your address; `curl https://checkip.amazonaws.com`)"
    with pytest.raises(ConfigError, match="not written as a network"):
        StackConfig(bastion=True, ssh_cidr="203.0.113.7").validate()
    bastion_config().validate()
    StackConfig().validate()   # no bastion, no CIDR: fine
    # The superset `down` builds has the bastion's steps even without a CIDR.
    assert set(build_steps(StackConfig(zones=list(ZONES)).superset())) >= set(BASTION_STEPS)


def test_every_bastion_step_tags_at_creation(built):
    for name in BASTION_STEPS:
        step = build_steps(built.config)[name]
        resource = step.find(built.last_ctx, built.last_ctx.resources[name].id)
        tags = _tags(resource.raw.get("Tags"))
        assert tags["Name"] == f"stylesphere-{name}" and tags[TAG_STEP] == name and tags[TAG_STACK] == "stylesphere"
    assert ("ec2", "CreateTags") not in built.last_ctx.calls
