"""Expiry options as users type them, and the account guard's configuration."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from provisioner.engine.errors import ConfigError
from provisioner.account.expiry import (NEVER, describe_expiry, expiry_from_options, expiry_phrase, humanize, parse_duration,
                                parse_tag, parse_time)
from provisioner.account.guard import allowed_accounts, check_account

AT = datetime(2026, 11, 22, 12, 0, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize("text, seconds", [
    ("4h", 4 * 3600), ("90m", 5400), ("1h30m", 5400), ("2d", 172800), ("1w", 604800), ("45s", 45), ("3H", 10800),
])
def test_durations(text, seconds):
    assert parse_duration(text, "--ttl") == timedelta(seconds=seconds)


@pytest.mark.parametrize("text, words", [
    ("4", "is not a duration"), ("h", "is not a duration"), ("-1h", "is not a duration"), ("4 hours", "not a duration"),
    ("0h", "longer than zero"), ("400d", "more than a year"), ("", "is not a duration"),
])
def test_bad_durations(text, words):
    with pytest.raises(ConfigError, match=words):
        parse_duration(text, "--ttl")


def test_ttl_and_expires_at_give_a_utc_tag_value():
    assert expiry_from_options("4h", None, at=AT) == "2026-11-22T16:00:00Z"
    assert expiry_from_options(None, "2026-11-23T18:00Z", at=AT) == "2026-11-23T18:00:00Z"
    # A zone is converted; none means UTC, whatever the laptop's zone.
    assert expiry_from_options(None, "2026-11-23T18:00+01:00", at=AT) == "2026-11-23T17:00:00Z"
    assert expiry_from_options(None, "2026-11-23T18:00", at=AT) == "2026-11-23T18:00:00Z"
    assert expiry_from_options("never", None, at=AT) == NEVER
    assert expiry_from_options(None, None, at=AT) is None


@pytest.mark.parametrize("ttl, expires_at, words", [
    ("4h", "2026-11-23T18:00Z", "not both"),
    (None, "tomorrow", "is not a time"),
    (None, "2026-11-22T11:00Z", "is in the past"),
])
def test_bad_expiry_options(ttl, expires_at, words):
    with pytest.raises(ConfigError, match=words):
        expiry_from_options(ttl, expires_at, at=AT)


def test_times_without_a_zone_are_utc():
    assert parse_time("2026-11-23T18:00", "--expires-at") == datetime(2026, 11, 23, 18, 0, tzinfo=timezone.utc)
    assert parse_time("2026-11-23T18:00:00-05:00", "--expires-at") == datetime(2026, 11, 23, 23, 0,
                                                                              tzinfo=timezone.utc)


def test_expiry_in_a_sentence():
    assert expiry_phrase("2026-11-22T16:12:00Z", AT) == "expires in 4h 12m"
    assert expiry_phrase("2026-11-22T11:40:00Z", AT) == "expired 20m ago"
    assert expiry_phrase(NEVER, AT) == "never expires"
    assert expiry_phrase(None, AT) == "no expiry"


def test_tag_values_and_their_description():
    assert parse_tag("2026-11-22T16:00:00Z") == AT + timedelta(hours=4)
    assert parse_tag(NEVER) is None and parse_tag(None) is None and parse_tag("soon") is None
    assert describe_expiry("2026-11-22T16:12:00Z", AT) == "in 4h 12m"
    assert describe_expiry("2026-11-22T11:40:00Z", AT) == "expired 20m ago"
    assert describe_expiry(NEVER, AT) == "never"
    assert describe_expiry(None, AT) == "-"
    assert humanize(timedelta(days=2, hours=4, minutes=5)) == "2d 4h"
    assert humanize(timedelta(seconds=0)) == "0s"


def test_no_guard_without_configuration(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert allowed_accounts() is None
    check_account("999999999999", sandbox=False, action="build")


def test_guard_from_the_environment(monkeypatch):
    monkeypatch.setenv("PROVISION_ALLOWED_ACCOUNTS", "111111111111, 222222222222")
    assert allowed_accounts() == (["111111111111", "222222222222"], "PROVISION_ALLOWED_ACCOUNTS")
    check_account("222222222222", sandbox=False, action="build")
    with pytest.raises(ConfigError) as refused:
        check_account("123456789012", sandbox=False, action="clean up")
    assert "refusing to clean up in account 123456789012" in refused.value.message
    assert "111111111111, 222222222222" in refused.value.message
    assert refused.value.exit_code == 2
    # The sandbox is not an account.
    check_account("123456789012", sandbox=True, action="build")


def test_guard_from_the_config_file(tmp_path, monkeypatch):
    path = tmp_path / "provision" / "config.ini"
    path.parent.mkdir()
    path.write_text("[accounts]\nallowed = 111111111111,\n    333333333333\n")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert allowed_accounts() == (["111111111111", "333333333333"], str(path))
    monkeypatch.setenv("PROVISION_CONFIG", str(tmp_path / "other.ini"))
    assert allowed_accounts() is None  # PROVISION_CONFIG names another (absent) file


@pytest.mark.parametrize("value, words", [
    ("12345", "is not a 12-digit AWS account id"), ("", "lists no account"), ("abc,111111111111", "'abc'"),
])
def test_bad_guard_configuration_is_refused(monkeypatch, value, words):
    monkeypatch.setenv("PROVISION_ALLOWED_ACCOUNTS", value)
    with pytest.raises(ConfigError, match=words):
        allowed_accounts()


def test_unreadable_config_file_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "config.ini"
    path.write_text("allowed = 111111111111\n")  # no section
    monkeypatch.setenv("PROVISION_CONFIG", str(path))
    with pytest.raises(ConfigError, match="cannot read"):
        allowed_accounts()
