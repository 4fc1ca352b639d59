"""Durations and times as users type them (`--ttl 4h`, `--older-than 90m`, `--expires-at
2026-11-23T18:00Z`) and as the expiry tag stores them (UTC, ISO 8601, to the second)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

from provisioner.engine.errors import ConfigError

# The tag value that says a stack has no expiry (`--ttl never`), as opposed to an absent tag,
# which says nobody set one.
NEVER = "never"
TAG_FORMAT = "%Y-%m-%dT%H:%M:%SZ"

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
# ASCII digits, whole string (\A...\Z): `\d` would take "٤h" and "４h" (int() reads them), `$` a
# trailing newline.
_DURATION_RE = re.compile(r"\A(?:([0-9]+)([smhdw]))+\Z")
_PART_RE = re.compile(r"([0-9]+)([smhdw])")
# Up to a year: a longer TTL is almost certainly a typo, and never expiring is `never`.
MAX_DURATION = timedelta(days=366)


def now() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)


def parse_duration(text: str, option: str) -> timedelta:
    """'4h', '90m', '1h30m', '2d' (units in either case): a positive duration of at most a year.
    The text as typed, no surrounding spaces, as every name and id the tool takes."""
    text = text or ""
    # ASCII only, checked before lower(), which maps some other letters onto ASCII ones (the
    # Kelvin sign onto k).
    value = text.lower() if text.isascii() else ""
    if not _DURATION_RE.fullmatch(value):
        raise ConfigError(f"{option} {text!r} is not a duration",
                          hint="use a number and a unit (s, m, h, d, w), e.g. 30m, 4h, 1h30m or 2d")
    seconds = sum(int(n) * _UNITS[unit] for n, unit in _PART_RE.findall(value))
    duration = timedelta(seconds=seconds)
    if duration <= timedelta(0):
        raise ConfigError(f"{option} {text!r} must be longer than zero")
    if duration > MAX_DURATION:
        raise ConfigError(f"{option} {text!r} is more than a year",
                          hint="use `--ttl never` for a stack that should not expire")
    return duration


def parse_time(text: str, option: str) -> datetime:
    """An ISO 8601 time; without a zone it is UTC (a stack's expiry must not depend on the
    laptop that set it)."""
    value = text or ""
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ConfigError(f"{option} {text!r} is not a time",
                          hint="use ISO 8601, e.g. 2026-11-23T18:00Z or 2026-11-23T18:00+01:00") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).replace(microsecond=0)


def expiry_from_options(ttl: str | None, expires_at: str | None, *, at: datetime | None = None) -> str | None:
    """The expiry tag's value for `up --ttl` / `--expires-at` (None when neither was given)."""
    if ttl is not None and expires_at is not None:
        raise ConfigError("give either --ttl or --expires-at, not both")
    if ttl is not None and ttl.isascii() and ttl.lower() == NEVER:
        return NEVER
    start = at or now()
    if ttl is not None:
        return format_time(start + parse_duration(ttl, "--ttl"))
    if expires_at is not None:
        moment = parse_time(expires_at, "--expires-at")
        # Checked here, where the user gives the time, never when a saved expiry is read back:
        # `down` and `status` must still work on a stack whose expiry has passed.
        if moment <= start:
            raise ConfigError(f"--expires-at {expires_at} is {'now' if moment == start else 'in the past'}",
                              hint="`provision reap` would delete the stack at once; give a later time")
        if moment - start > MAX_DURATION:
            raise ConfigError(f"--expires-at {expires_at} is more than a year away (the --ttl limit)",
                              hint="use `--ttl never` for a stack that should not expire")
        return format_time(moment)
    return None


def format_time(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime(TAG_FORMAT)


def parse_tag(value: str | None) -> datetime | None:
    """A tag's time, or None for an absent, `never` or unreadable value (never a guess)."""
    if not value or value == NEVER:
        return None
    try:
        return datetime.strptime(value, TAG_FORMAT).replace(tzinfo=timezone.utc)
    except ValueError:
        return None


def validate_expiry(value: str | None) -> None:
    """The config's remembered expiry, as read back from a state file: in the tag's own form
    (strptime reads other scripts' digits too), and possibly past (that is for `reap` to act on)."""
    if value is None or value == NEVER:
        return
    moment = parse_tag(value)
    if moment is None or format_time(moment) != value:
        raise ConfigError(f"invalid expiry {value!r} in the stack's configuration",
                          hint="run `provision up --ttl 4h` (or --expires-at, or --ttl never) to set it again")


def humanize(delta: timedelta) -> str:
    """'2d 4h', '3h 0m', '12m', '45s': the largest unit and, above minutes, the next one."""
    seconds = int(abs(delta.total_seconds()))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m"
    if seconds < 86400:
        return f"{seconds // 3600}h {seconds % 3600 // 60}m"
    return f"{seconds // 86400}d {seconds % 86400 // 3600}h"


def expiry_phrase(value: str | None, at: datetime | None = None) -> str:
    """For a sentence: 'expires in 3h 12m', 'expired 20m ago', 'never expires', 'no expiry'."""
    described = describe_expiry(value, at)
    if described == "-":
        return "no expiry"
    if described == NEVER:
        return "never expires"
    return described if described.startswith("expired") else f"expires {described}"


def describe_expiry(value: str | None, at: datetime | None = None) -> str:
    """For a table: 'in 3h 12m', 'expired 20m ago', 'never', '-' (not set)."""
    if value == NEVER:
        return NEVER
    moment = parse_tag(value)
    if moment is None:
        return "-"
    delta = moment - (at or now())
    return f"in {humanize(delta)}" if delta.total_seconds() > 0 else f"expired {humanize(delta)} ago"
