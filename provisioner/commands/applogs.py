"""`provision logs --app`: the app's containers' lines from CloudWatch Logs (--monitoring).

Docker's awslogs driver writes one stream per container and instance, `<instance-id>/<container>`
(app/docker-compose.awslogs.yml); FilterLogEvents over the group interleaves them by time, and
each line says which instance and container it came from.
"""

from __future__ import annotations

import datetime as dt
import re
import sys
import time
from typing import Callable, Iterable, Iterator

from provisioner.engine.errors import EXIT_INTERRUPTED, EXIT_OK, ConfigError

DEFAULT_SINCE = "10m"
# Seconds between two reads of --follow. CloudWatch Logs makes an event searchable a few seconds
# after PutLogEvents, and FilterLogEvents is throttled at a few calls a second per account.
FOLLOW_DELAY = 5.0
# An event written just before a read may appear only at the next one with a timestamp already
# behind the read's start: each read goes back this far, and event ids keep it from repeating.
FOLLOW_OVERLAP_MS = 60_000
_SINCE_RE = re.compile(r"(\d+)\s*([smhd])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(text: str, now: dt.datetime | None = None) -> int:
    """Milliseconds since the epoch of `10m`, `2h`, `1d` (ago) or an ISO 8601 time (UTC if no zone)."""
    now = now or dt.datetime.now(dt.timezone.utc)
    value = (text or "").strip()
    match = _SINCE_RE.fullmatch(value.lower())
    if match:
        amount = int(match.group(1))
        if amount <= 0:
            raise ConfigError(f"--since {text!r} must be a duration greater than 0", hint="e.g. --since 10m")
        return int((now - dt.timedelta(seconds=amount * _UNIT_SECONDS[match.group(2)])).timestamp() * 1000)
    try:
        when = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"--since {text!r} is neither a duration nor a time",
                          hint="a duration such as 30s, 10m, 2h or 1d, or an ISO time such as "
                               "2026-01-31T09:30 (UTC unless it has a zone)") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    if when > now:
        raise ConfigError(f"--since {text!r} is in the future")
    return int(when.timestamp() * 1000)


def format_event(event: dict) -> str:
    """`<time> <instance> <container> <message>`, the time in UTC to the millisecond."""
    stamp = dt.datetime.fromtimestamp(event["timestamp"] / 1000, dt.timezone.utc)
    instance, _, container = event.get("logStreamName", "").partition("/")
    return f"{stamp:%Y-%m-%dT%H:%M:%S.}{stamp.microsecond // 1000:03d}Z {instance or '-'} {container or '-'} " \
           f"{event.get('message', '').rstrip()}"


def read_events(logs, group: str, start_ms: int) -> Iterator[dict]:
    """Every event of the group from `start_ms`, page after page (nextToken)."""
    params = {"logGroupName": group, "startTime": start_ms, "interleaved": True}
    while True:
        page = logs.filter_log_events(**params)
        yield from page.get("events", [])
        token = page.get("nextToken")
        if not token or token == params.get("nextToken"):
            return
        params["nextToken"] = token


def new_events(events: Iterable[dict], seen: dict[str, int]) -> list[dict]:
    """The events not shown yet (by eventId), in time order; `seen` keeps each shown id with its
    timestamp."""
    fresh = []
    for event in events:
        key = event.get("eventId") or f"{event.get('logStreamName')}:{event.get('timestamp')}:{event.get('message')}"
        if key not in seen:
            seen[key] = event["timestamp"]
            fresh.append(event)
    return sorted(fresh, key=lambda e: (e["timestamp"], e.get("ingestionTime", 0)))


def forget_before(seen: dict[str, int], start_ms: int) -> None:
    """Drop the ids of events older than the next read's start: no read returns them again, and a
    --follow left running for days keeps only the last overlap's ids, not every line it printed."""
    for key in [k for k, stamp in seen.items() if stamp < start_ms]:
        del seen[key]


def group_exists(logs, group: str) -> bool:
    return any(g["logGroupName"] == group for g in logs.describe_log_groups(logGroupNamePrefix=group).get("logGroups", []))


def show_app_logs(logs, group: str, since_ms: int, *, follow: bool, write: Callable[[str], None],
                  note: Callable[[str], None], delay: float = FOLLOW_DELAY,
                  sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.time) -> int:
    """Print the group's events from `since_ms`; with `follow`, keep reading every `delay` seconds
    until interrupted (exit 130, as every command interrupted with Ctrl-C). Returns the exit code."""
    seen: dict[str, int] = {}
    shown = False
    start = since_ms
    said_waiting = False
    try:
        while True:
            read_at = int(clock() * 1000)
            events = new_events(read_events(logs, group, start), seen)
            for event in events:
                write(format_event(event))
            shown = shown or bool(events)
            if not follow:
                break
            if not shown and not said_waiting:
                note(f"no events in {group} yet; waiting for some (Ctrl-C to stop)")
                said_waiting = True
            start = max(since_ms, read_at - FOLLOW_OVERLAP_MS)
            forget_before(seen, start)
            sleep(delay)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    if not shown and not follow:
        note(f"no events in {group} since then: the instances write there once their containers start "
             "(`provision logs` shows an instance's boot), or try a longer --since")
    return EXIT_OK


def stdout_line(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()
