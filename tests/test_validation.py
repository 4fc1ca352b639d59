"""Input the tool passes on to AWS is checked whole and in ASCII, before any AWS call: a name with
a trailing newline, a look-alike letter or another script's digits is refused, not built half-way.
Values that become tags fit AWS's tag rules; `--expires-at` has the same one-year bound as `--ttl`."""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta, timezone

import pytest

import steps  # noqa: F401  (registers the steps)
from provisioner.shape.config import StackConfig, normalize_ssh_cidr, validate_domain, validate_stack_name
from provisioner.engine.context import TAG_STUDENT, RunContext
from provisioner.engine.errors import ConfigError
from provisioner.account.expiry import MAX_DURATION, expiry_from_options, format_time, parse_duration, validate_expiry
from provisioner.account.guard import allowed_accounts
from provisioner.account.preflight import caller_account, resolve_region
from provisioner.engine.registry import build_steps
from provisioner.cli.remote import check_ids
from provisioner.commands.roster import load_roster, validate_roster_name
from provisioner.shape.tags import TAG_VALUE_MAX, fit_tag_value, tag_problem

from stacks import REGION
from test_cli import cli, write_state, state_dir  # noqa: F401  (fixtures)
from test_fleet import calls  # noqa: F401  (fixture)

AT = datetime(2026, 11, 22, 12, 0, 0, tzinfo=timezone.utc)
UUID = "1a2b3c4d-0000-4000-8000-123456789abc"


# -- every name rule against the same tricks ------------------------------------------------------

def roster_region(value, tmp_path):
    path = tmp_path / "cs101.csv"
    path.write_text(f"name,region\nAda,{value}\n", encoding="utf-8")
    load_roster(str(path))


def allowed_account(value, helpers):
    # From the config file: an environment variable cannot hold a NUL.
    path = helpers["tmp_path"] / "config.ini"
    path.write_text(f"[accounts]\nallowed = {value}\n", encoding="utf-8")
    helpers["monkeypatch"].setenv("PROVISION_CONFIG", str(path))
    allowed_accounts()


# rule: (a value the rule accepts, the check; each check takes the value and a helper fixture).
RULES = {
    "stack name": ("lab-kiosk-1", lambda v, _: validate_stack_name(v)),
    "roster name": ("cs101-kiosk-a", lambda v, _: validate_roster_name(v)),
    "domain": ("kiosk-1.example.com", lambda v, _: validate_domain(v)),
    "AMI": ("ami-0123456789abcdef1", lambda v, _: StackConfig(ami=v).validate_compute()),
    "instance type": ("c6id.12xlarge", lambda v, _: StackConfig(instance_type=v).validate_compute()),
    "certificate ARN": (f"arn:aws:acm:ap-south-1:123456789012:certificate/{UUID}",
                        lambda v, _: StackConfig(certificate_arn=v).validate_compute()),
    "region": ("ap-south-1", lambda v, _: resolve_region(v, None, sandbox=False)),
    "roster region": ("ap-south-1", lambda v, h: roster_region(v, h["tmp_path"])),
    "TTL": ("1h30m", lambda v, _: parse_duration(v, "--ttl")),
    "TTL through the options": ("1h30m", lambda v, _: expiry_from_options(v, None, at=AT)),
    "account id": ("111122223333", lambda v, h: allowed_account(v, h)),
    "instance id": ("i-0123456789abcdef1", lambda v, _: check_ids([v])),
}
# Lists where whitespace separates values by design: the guard's allow-list ("111, 222" or one
# id per line), and a CSV cell, whose runs of whitespace the roster reader folds into one space.
WHITESPACE_SEPARATES = {"account id", "roster region"}


def swap(value: str, ascii_char: str, other: str) -> str:
    """`value` with its first `ascii_char` (else its first ASCII letter or digit) replaced."""
    index = value.find(ascii_char)
    if index < 0:
        index = next(i for i, c in enumerate(value) if c.isascii() and c.isalnum())
    return value[:index] + other + value[index + 1:]


TRICKS = {
    "trailing newline": lambda v: v + "\n",
    "leading space": lambda v: " " + v,
    "trailing space": lambda v: v + " ",
    "embedded NUL": lambda v: v[:3] + "\0" + v[3:],
    "Cyrillic a (U+0430)": lambda v: swap(v, "a", "\u0430"),
    "fullwidth 1 (U+FF11)": lambda v: swap(v, "1", "\uff11"),
    "Arabic-Indic 1 (U+0661)": lambda v: swap(v, "1", "\u0661"),
    "Kelvin sign (U+212A)": lambda v: swap(v, "k", "\u212a"),
    "dotless i (U+0131)": lambda v: swap(v, "i", "\u0131"),
}
CASES = [pytest.param(rule, trick, id=f"{rule}-{trick}") for rule in RULES for trick in TRICKS
         if not (rule in WHITESPACE_SEPARATES and trick in ("trailing newline", "leading space", "trailing space"))]


@pytest.fixture
def helpers(tmp_path, monkeypatch):
    return {"tmp_path": tmp_path, "monkeypatch": monkeypatch}


@pytest.mark.parametrize("rule", RULES)
def test_each_rule_takes_its_plain_value(rule, helpers):
    good, check = RULES[rule]
    check(good, helpers)


@pytest.mark.parametrize("rule, trick", CASES)
def test_each_rule_refuses_the_tricked_value(rule, trick, helpers):
    good, check = RULES[rule]
    bad = TRICKS[trick](good)
    assert bad != good
    with pytest.raises(ConfigError):
        check(bad, helpers)


def test_an_expiry_read_back_is_in_the_tags_own_digits():
    # strptime's %Y reads "٢٠٢٦" as 2026: a state file's expiry must be exactly what format_time writes.
    validate_expiry("2026-11-22T16:00:00Z")
    with pytest.raises(ConfigError, match="invalid expiry"):
        validate_expiry("\u0662\u0660\u0662\u0666-11-22T16:00:00Z")


def test_odd_cidr_spellings_are_refused_or_rewritten():
    with pytest.raises(ConfigError, match="is not written as a network"):
        StackConfig(vpc_cidr="10.0.0.0/255.255.0.0").validate()
    with pytest.raises(ConfigError, match="is not written as a network"):
        StackConfig(public_subnet_cidrs=["10.0.1.0/024", "10.0.2.0/24"]).validate()
    # --ssh-cidr is rewritten, never passed on as typed: what reaches AWS is the network alone.
    assert normalize_ssh_cidr("10.0.0.0/8\n") == "10.0.0.0/8"
    assert normalize_ssh_cidr("10.0.0.0/255.0.0.0") == "10.0.0.0/8"
    with pytest.raises(ConfigError, match="is not written as a network"):
        StackConfig(bastion=True, ssh_cidr="10.0.0.0/8\n").validate()


# -- through the CLI: exit 2, the message, no traceback, no AWS call ------------------------------

@pytest.mark.parametrize("args, words", [
    (["up", "--yes", "--stack", "lab-a\n"], "invalid stack name 'lab-a\\n'"),
    (["plan", "--stack", "l\u0430b"], "invalid stack name 'lаb'"),
    (["up", "--yes", "--instance-type", "t3.micro\n"], "invalid instance type 't3.micro\\n'"),
    (["up", "--yes", "--ami", "ami-0123456789abcdef0\n"], "invalid AMI id 'ami-0123456789abcdef0\\n'"),
    (["plan", "--domain", "shop.example.com\n"], "invalid domain 'shop.example.com\\n'"),
    (["up", "--yes", "--certificate-arn", f"arn:aws:acm:us-east-1:\uff1123456789012:certificate/{UUID}"],
     "invalid certificate ARN"),
    (["up", "--yes", "--ttl", "\u0664h"], "--ttl '٤h' is not a duration"),
    (["up", "--yes", "--ttl", "4h\n"], "--ttl '4h\\n' is not a duration"),
    (["up", "--yes", "--vpc-cidr", "10.0.0.0/255.255.0.0"], "VPC CIDR '10.0.0.0/255.255.0.0' is not written"),
    (["logs", "i-0123456789abcdef0\n"], "invalid instance id 'i-0123456789abcdef0\\n'"),
    (["up", "--yes", "--expires-at", "2099-01-01T00:00Z"], "is more than a year away"),
])
def test_tricked_options_are_refused_before_any_aws_call(moto_aws, state_dir, calls, args, words):
    result = cli(*args, state_dir=state_dir)   # cli() fails the test on a traceback
    assert result.exit_code == 2, result.output
    assert "error:" in result.output and words in result.text, result.text
    assert calls == []
    assert not os.path.exists(os.path.join(state_dir, "stylesphere.json"))


def test_a_region_with_a_trailing_newline_is_refused(moto_aws, state_dir, calls):
    result = cli("up", "--yes", state_dir=state_dir, region="us-east-1\n")
    assert result.exit_code == 2, result.output
    assert "unknown AWS region 'us-east-1\\n'" in result.text and "did you mean us-east-1?" in result.text
    assert calls == []


def test_a_roster_name_with_a_trailing_newline_is_refused(moto_aws, tmp_path, state_dir, calls):
    path = tmp_path / "cs101.csv"
    path.write_text("name\nAda\n")
    result = cli("fleet", "up", "--roster", str(path), "--roster-name", "cs101\n", state_dir=state_dir)
    assert result.exit_code == 2, result.output
    assert "invalid roster name 'cs101\\n'" in result.text
    assert calls == []


def test_an_older_than_in_other_digits_is_a_usage_error(moto_aws, state_dir, calls):
    result = cli("cleanup", "--older-than", "\uff13h", state_dir=state_dir)
    assert result.exit_code == 2, result.output
    assert "is not a duration" in result.text
    assert calls == []


# -- tags -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("value", [
    "x" * TAG_VALUE_MAX, "Zoë Ångström", "李雷", "Ada Lovelace", "ada+lab@example.edu", "a\u00a0b",
    "\u0663", "_.:/=+-@", "", "arn:aws:sts::123456789012:assumed-role/lab/ada@example.edu",
])
def test_values_aws_takes_as_tags(value):
    assert tag_problem(value) is None


@pytest.mark.parametrize("value, words", [
    ("x" * (TAG_VALUE_MAX + 1), "is 257 characters; a tag value holds at most 256"),
    ("Ada\nLovelace", "U+000A, a control character"),
    ("a\tb", "U+0009"),
    ("a\0b", "U+0000"),
    ("O<Brien", "'<' (U+003C LESS-THAN SIGN)"),
    ("Lovelace, Ada", "U+002C COMMA"),
    ("O'Brien", "U+0027 APOSTROPHE"),
    ("Zoe\u0308", "U+0308 COMBINING DIAERESIS"),   # "Zoë" decomposed (NFD): a mark is not a letter
    ("lab 🎓", "GRADUATION CAP"),
    ("aws:owner", "starts with 'aws:'"),
    ("AWS:Owner", "starts with 'AWS:'"),
])
def test_values_aws_refuses_as_tags(value, words):
    problem = tag_problem(value)
    assert problem is not None and words in problem, problem


def test_tag_keys_have_their_own_limit():
    assert tag_problem("k" * 128, key=True) is None
    assert "a tag key holds at most 128" in tag_problem("k" * 129, key=True)
    assert tag_problem("", key=True) is not None and tag_problem("aws:x", key=True) is not None


def test_the_callers_arn_is_made_to_fit_rather_than_refused(monkeypatch):
    arn = "arn:aws:iam::123456789012:user/" + "division,team/" * 40 + "ada"

    class Sts:
        def get_caller_identity(self):
            return {"Arn": arn, "Account": "123456789012"}

    ctx = RunContext(stack="lab", region=REGION, config=StackConfig())
    monkeypatch.setattr(ctx, "client", lambda service: Sts())
    assert caller_account(ctx) == "123456789012"
    assert len(ctx.owner) == TAG_VALUE_MAX and "," not in ctx.owner and tag_problem(ctx.owner) is None
    assert ctx.owner.startswith("arn:aws:iam::123456789012:user/division_team/")
    assert fit_tag_value(ctx.owner) == ctx.owner


def test_every_tag_of_every_step_fits_for_the_longest_names():
    config = StackConfig(zones=["us-east-1a", "us-east-1b"], roster="r" * 32, student="s" * TAG_VALUE_MAX,
                         expires_at=format_time(AT))
    ctx = RunContext(stack="lab-" + "x" * 19, region=REGION, config=config)   # STACK_NAME_MAX
    ctx.owner = fit_tag_value("arn:aws:iam::123456789012:user/" + "p/" * 1000)
    for step in build_steps(config.superset()):
        for tag in ctx.tags(step):
            assert tag_problem(tag["Key"], key=True) is None, (step, tag)
            assert tag_problem(tag["Value"]) is None, (step, tag)


@pytest.mark.parametrize("field, value", [("student", "x" * 257), ("student", "O<Brien"), ("roster", "aws:cs101"),
                                          ("student", "Ada\nLovelace")], ids=["long", "angle", "aws", "newline"])
def test_a_config_value_that_cannot_be_a_tag_is_refused(field, value):
    config = StackConfig(**{field: value})
    config.validate()   # `down` and `status` still load a stack saved with it
    with pytest.raises(ConfigError, match=f"the stack's {field}"):
        config.validate_tags()   # `up`, `plan` and `fleet up` refuse to build with it


def test_a_config_with_non_ascii_letters_is_fine():
    StackConfig(roster="cs101", student="Zoë Ångström").validate_tags()
    StackConfig(roster="cs101", student="李雷").validate_tags()


def long_email() -> str:
    email = "a" * 250 + "@example.edu"
    assert len(email) == 262
    return email


def test_a_roster_value_that_cannot_be_a_tag_is_refused_with_its_line(tmp_path):
    path = tmp_path / "cs101.csv"
    path.write_text("name,id,email\n"
                    "Ada Lovelace,,ada@example.edu\n"
                    f"Alan Turing,,{long_email()}\n"
                    "O<Brien,,\n"
                    "Grace Hopper,,gr\0ce@example.edu\n"
                    "Edsger,aws:e1,\n", encoding="utf-8")
    with pytest.raises(ConfigError) as raised:
        load_roster(str(path))
    lines = raised.value.message.splitlines()
    assert "4 problem(s)" in lines[0]
    assert lines[1].strip().startswith("line 3: email 'aaaa") and "is 262 characters" in lines[1]
    assert f"it becomes the {TAG_STUDENT} tag" in lines[1]
    assert lines[2].strip().startswith("line 4: name 'O<Brien'") and "U+003C" in lines[2]
    assert lines[3].strip().startswith("line 5: email 'gr\\x00ce@example.edu'")
    assert lines[4].strip().startswith("line 6: id 'aws:e1' starts with 'aws:'")


def test_only_the_value_that_becomes_the_tag_is_held_to_the_tag_rules(tmp_path):
    path = tmp_path / "cs101.csv"
    path.write_text("name,email\nO'Brien,obrien@example.edu\nZoë Ångström,\n李雷,\n"
                    f"Ann,{'b' * 244}@example.edu\n", encoding="utf-8")
    students = load_roster(str(path)).students
    longest = "b" * 244 + "@example.edu"
    assert [s.owner for s in students] == ["obrien@example.edu", "Zoë Ångström", "李雷", longest]
    assert len(longest) == TAG_VALUE_MAX


def test_fleet_up_refuses_a_262_character_email_before_any_aws_call(moto_aws, tmp_path, state_dir, calls):
    path = tmp_path / "cs101.csv"
    path.write_text(f"name,email\nAda,ada@example.edu\nAlan,{long_email()}\n")
    result = cli("fleet", "up", "--roster", str(path), state_dir=state_dir)
    assert result.exit_code == 2, result.output
    assert "line 3: email" in result.text and "is 262 characters; a tag value holds at most 256" in result.text
    assert calls == []
    assert not os.path.exists(state_dir) or not os.listdir(state_dir)


# -- --expires-at: the same year as --ttl, and never now or past ----------------------------------

def test_expires_at_is_bounded_like_ttl():
    assert expiry_from_options(None, format_time(AT + MAX_DURATION), at=AT) == format_time(AT + MAX_DURATION)
    with pytest.raises(ConfigError, match="more than a year away"):
        expiry_from_options(None, format_time(AT + MAX_DURATION + timedelta(seconds=1)), at=AT)
    with pytest.raises(ConfigError, match="is now"):
        expiry_from_options(None, format_time(AT), at=AT)
    with pytest.raises(ConfigError, match="is in the past"):
        expiry_from_options(None, format_time(AT - timedelta(seconds=1)), at=AT)
    # As --ttl: a year is the limit either way.
    with pytest.raises(ConfigError, match="more than a year"):
        expiry_from_options(f"{MAX_DURATION.days + 1}d", None, at=AT)


def test_a_saved_expiry_that_has_passed_still_loads(moto_aws, state_dir):
    write_state(state_dir, config={"expires_at": "2020-01-01T00:00:00Z"})
    status = cli("status", "--json", state_dir=state_dir)
    assert status.exit_code == 0, status.output
    down = cli("down", "--yes", state_dir=state_dir)
    assert down.exit_code == 0, down.output
    assert json.loads(status.stdout)
