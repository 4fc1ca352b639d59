#!/usr/bin/env python3
"""Benchmark for `provision fleet up` (run from the repository root):

    python3 bench/bench_fleet.py                      # about 110 s
    python3 bench/bench_fleet.py --students 10 --scale 0.02
    python3 bench/bench_fleet.py --skip-throttling    # part 1 only
    python3 bench/bench_fleet.py --account-rate 40 --throttle-students 4

It prints figures; it asserts nothing about timing. Two parts:

1. `fleet up` of a roster of N students (default 6) with AWS-like waits (NAT gateway 90 s to
   become available, load balancer 180 s to turn active, ..., every call its latency; all scaled
   by --scale, as bench_cleanup.py does), waiting for healthy instances: one stack's `up` alone,
   then the fleet with `--parallel 1` and with `--parallel N` (wall time, AWS calls, throttled
   answers), then the same `fleet up` again (wall time and mutating calls: should be 0).
2. the fleet's shared rate limiter against an account's API rate limit: an account-wide token
   bucket (default 20 requests/s, a bucket of 40; --account-rate, --account-burst) answers 503
   RequestLimitExceeded to the requests beyond it, as tests/test_retries.py's ThrottleFirst does.
   `fleet up --no-wait` of N students with the limiter at its normal rate
   (provisioner.commands.fleet.FLEET_API_RATE), then with the limiter effectively off (rate 1e6, never
   slowing down): throttled answers, failed stacks, wall time, the limiter's lowest rate.

Everything runs in-process on moto with provisioner.sandbox.emulator applied and the strict fixture of
tests/strict.py, through the CLI's own code (click's test runner), with the same latency hook as
bench_engine.py. The emulator's service quotas are raised in this process so that the class fits
the quota preflight (moto's defaults are a new account's: 5 VPCs, 5 Elastic IPs per region).
See bench/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from bench_cleanup import hooked_cli  # noqa: E402
from bench_engine import (ALB_CREATE, NAT_CREATE, READ_LATENCY, REGION, aws_like_delays,  # noqa: E402
                          isolate_environment, latency_hook, warm_moto)

ROSTER_NAME = "bench"
SUMMARY_RE = re.compile(r"(\d+) of (\d+) stack\(s\) up(?:, (\d+) healthy)?(?:; (\d+) failed)? in (\S+); "
                        r"(\d+) resource\(s\) created or changed; (\d+) AWS requests, (\d+) throttled\.")


def write_roster(directory: str, students: int) -> str:
    path = Path(directory) / f"{ROSTER_NAME}.csv"
    path.write_text("name,email\n" + "".join(f"Student {i:02d},student{i:02d}@example.edu\n"
                                             for i in range(1, students + 1)))
    return str(path)


def raise_quotas(students: int) -> None:
    """Room for the class in the emulator's Service Quotas (the preflight reads them), as an
    account raised for a class would have; the default 5 VPCs per region fit 4 stacks."""
    from provisioner.sandbox import emulator

    room = float(students + 5)
    # The emulator names the services of the quotas it answers itself; moto's own answers `vpc`.
    emulator.SERVICE_NAMES.setdefault("vpc", "Amazon Virtual Private Cloud (Amazon VPC)")
    for key, name in {("vpc", "L-F678F1CE"): "VPCs per Region",
                      ("vpc", "L-A4707A72"): "Internet gateways per Region",
                      ("ec2", "L-0263D0A3"): "EC2-VPC Elastic IPs",
                      ("vpc", "L-FE5A380F"): "NAT gateways per Availability Zone"}.items():
        current = emulator.EMULATOR_SERVICE_QUOTAS.get(key, (name, 5.0))[1]
        emulator.EMULATOR_SERVICE_QUOTAS[key] = (name, max(current, room))
    vcpus = ("ec2", "L-1216C47A")
    name, current = emulator.EMULATOR_SERVICE_QUOTAS[vcpus]
    # A stack's two app instances; 4 vCPUs each is more than the default instance type has.
    emulator.EMULATOR_SERVICE_QUOTAS[vcpus] = (name, max(current, 8.0 * students + 8))


class CallCounter:
    """Every AWS operation the CLI's contexts make (RunContext._before_call, once per call, not
    per retried attempt), as (stack, operation); the way tests/test_fleet.py's `calls` does."""

    def __init__(self):
        from provisioner.engine.context import RunContext

        self.seen: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        self.original = RunContext._before_call
        counter = self

        def before_call(ctx, model, context, **kwargs):
            with counter.lock:
                counter.seen.append((ctx.stack, model.name))
            return counter.original(ctx, model, context, **kwargs)

        RunContext._before_call = before_call

    def take(self) -> list[tuple[str, str]]:
        with self.lock:
            seen, self.seen = self.seen, []
        return seen

    def restore(self):
        from provisioner.engine.context import RunContext

        RunContext._before_call = self.original


class LimiterSpy:
    """Keeps every provisioner.commands.fleet.RateLimiter made (one per `fleet up`). `rate`: the next ones
    start at this rate instead of the fleet's; `steady`: they never slow down on a throttled
    answer (floor = ceiling), counting the throttles all the same."""

    def __init__(self):
        from provisioner.commands import fleet

        self.made: list = []
        self.rate: float | None = None
        self.steady = False
        self.original = fleet.RateLimiter.__init__
        spy = self

        def init(limiter, rate, *args, **kwargs):
            spy.original(limiter, spy.rate if spy.rate is not None else rate, *args, **kwargs)
            if spy.steady:
                limiter.floor = limiter.ceiling
            spy.made.append(limiter)

        fleet.RateLimiter.__init__ = init

    def restore(self):
        from provisioner.commands import fleet

        fleet.RateLimiter.__init__ = self.original


# Services whose errors are JSON (botocore's `json` protocol), by the service id in event names.
JSON_SERVICES = {"acm", "service-quotas"}


def account_throttle_response(request, service: str):
    """What the service answers a request beyond the account's rate, in its own protocol, so
    that botocore parses a throttling code out of it: EC2's 503 RequestLimitExceeded (and the
    same XML for the other query services, whose parser reads it alike), S3's 503 SlowDown,
    and a JSON ThrottlingException. EC2's XML alone would reach the limiter as code '' from S3
    and '503' from ACM: retried by botocore, but not counted as throttling."""
    from botocore.awsrequest import AWSResponse

    from test_retries import _Raw, throttle_response

    if service == "s3":
        body = (b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message>"
                b"<RequestId>throttled</RequestId></Error>")
        return AWSResponse(request.url, 503, {}, _Raw(body))
    if service in JSON_SERVICES:
        body = b'{"__type":"ThrottlingException","message":"Rate exceeded"}'
        return AWSResponse(request.url, 400, {"x-amzn-ErrorType": "ThrottlingException",
                                              "Content-Type": "application/x-amz-json-1.1"}, _Raw(body))
    return throttle_response(request)


class AccountBucket:
    """The account's API rate limit: a token bucket over every request of every session (each
    HTTP attempt, retries included), refilled at `rate` per second up to `burst`. A request that
    finds it empty is answered as throttled (account_throttle_response) and never reaches moto,
    as tests/test_retries.py's ThrottleFirst does it. A `before-send` hook."""

    def __init__(self, rate: float, burst: float):
        self.rate, self.burst = rate, burst
        self.tokens = burst
        self.updated = time.monotonic()
        self.lock = threading.Lock()
        self.requests = 0
        self.throttled = 0
        self.by_operation: Counter = Counter()
        self.started = self.updated
        self.times: list[float] = []    # when each throttled answer was given, from the start

    def __call__(self, request, event_name="", **_):
        with self.lock:
            now = time.monotonic()
            self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
            self.updated = now
            self.requests += 1
            if self.tokens >= 1:
                self.tokens -= 1
                return None
            self.throttled += 1
            self.times.append(now - self.started)
            self.by_operation[event_name.rsplit(".", 1)[-1]] += 1  # before-send.<service>.<Operation>
        response = account_throttle_response(request, event_name.split(".")[1])
        request.url = "https://throttled.invalid/"  # so that moto does not carry it out
        return response


def with_bucket_before_moto(session, bucket):
    """The bucket at the place of AWS: on every client the session makes, the last `before-send`
    handler before moto's stubber. botocore runs a client's before-send handlers in order and
    takes the first answer; the fleet's limiter (RunContext._take_token) and botocore's adaptive
    rate limiter are registered on the client after it is made, after moto's stubber (which
    every session has from botocore's BUILTIN_HANDLERS), so with the bucket registered first
    on the session, a request would reach the account before the limiter has let it go."""
    from moto.core.models import botocore_stubber

    original = session.client

    def client(*args, **kwargs):
        made = original(*args, **kwargs)
        events = made.meta.events
        events.unregister("before-send", botocore_stubber)
        events.register_last("before-send", bucket)
        events.register_last("before-send", botocore_stubber)
        return made

    session.client = client
    return session


def bucket_cli(strict, hooks, bucket, first: bool):
    """bench_cleanup.hooked_cli, with the account's bucket on every session: registered first
    (`first`, as tests/test_retries.py's hooks are), or just before moto (the default)."""
    import stacks

    if first:
        return hooked_cli(strict, [("before-send", bucket), *hooks])
    original = stacks.make_session
    # hooked_cli binds stacks.make_session when it is called: hand it one that adds the bucket.
    stacks.make_session = lambda strict_, hooks_: with_bucket_before_moto(original(strict_, hooks_), bucket)
    try:
        return hooked_cli(strict, hooks)
    finally:
        stacks.make_session = original


def parse_summary(output: str) -> dict:
    text = " ".join(output.split())
    match = SUMMARY_RE.search(text)
    if not match:
        return {"parsed": False}
    up, total, healthy, failed, took, changed, calls, throttled = match.groups()
    return {"parsed": True, "up": int(up), "total": int(total), "healthy": int(healthy or 0),
            "failed": int(failed or 0), "took": took, "changed": int(changed), "limiter_calls": int(calls),
            "throttled": int(throttled)}


def show_failure(label: str, result) -> None:
    print(f"!! {label}: exit {result.exit_code}")
    tail = "\n".join(result.output.splitlines()[-25:])
    print("   " + tail.replace("\n", "\n   "))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        import traceback

        traceback.print_exception(result.exception)


# --------------------------------------------------------------------------------------------
# 1. fleet up with AWS-like waits
# --------------------------------------------------------------------------------------------
def bench_fleet_up(students: int, scale: float, state_root: str, limiter_rate: float | None) -> dict:
    from moto import mock_aws

    from provisioner.engine.context import is_mutating
    from strict import StrictAws

    print(f"\n== 1. fleet up of {students} students with AWS-like waits, scaled by {scale:g} "
          f"(NAT {NAT_CREATE:g} s -> {NAT_CREATE * scale:.2g} s, load balancer {ALB_CREATE:g} s -> "
          f"{ALB_CREATE * scale:.2g} s, reads {READ_LATENCY * scale * 1000:.0f} ms), waiting for health ==")
    from provisioner.commands.fleet import FLEET_API_RATE

    if limiter_rate is None:
        print(f"the fleet's limiter at its own {FLEET_API_RATE:g} calls/s of wall-clock time "
              f"(the waits are scaled, it is not)")
    else:
        print(f"the fleet's limiter at {FLEET_API_RATE:g} calls/s of AWS time, scaled like the waits: "
              f"{limiter_rate:g}/s here (--limiter-real-time: {FLEET_API_RATE:g}/s)")
    figures: dict = {}
    calls = CallCounter()
    spy = LimiterSpy()
    spy.rate = limiter_rate
    try:
        # One stack's `up` alone (no fleet, no limiter), the yardstick.
        with mock_aws():
            warm_moto()
            strict = StrictAws(region=REGION, delays=aws_like_delays(scale))
            run, restore = hooked_cli(strict, [("before-parameter-build", latency_hook(scale))])
            try:
                state_dir = tempfile.mkdtemp(dir=state_root)
                result, wall = run("up", "--stack", "bench-one", "--state-dir", state_dir)
            finally:
                restore()
        seen = calls.take()
        if result.exit_code != 0:
            show_failure("up", result)
        figures["one"] = {"wall": wall, "calls": len(seen), "exit": result.exit_code}
        print(f"one stack's `up`:            {wall:6.2f} s, {len(seen):4d} AWS calls, exit {result.exit_code}")

        for parallel in (1, students):
            with mock_aws():
                warm_moto()
                strict = StrictAws(region=REGION, delays=aws_like_delays(scale))
                run, restore = hooked_cli(strict, [("before-parameter-build", latency_hook(scale))])
                try:
                    state_dir = tempfile.mkdtemp(dir=state_root)
                    roster = write_roster(tempfile.mkdtemp(dir=state_root), students)
                    result, wall = run("fleet", "up", "--roster", roster, "--parallel", str(parallel),
                                       "--state-dir", state_dir)
                    seen = calls.take()
                    summary = parse_summary(result.output)
                    if result.exit_code != 0 or not summary["parsed"]:
                        show_failure(f"fleet up --parallel {parallel}", result)
                    label = f"fleet up --parallel {parallel}"
                    figures[label] = {"wall": wall, "calls": len(seen), "exit": result.exit_code,
                                      "lowest": spy.made[-1].lowest if spy.made else None, **summary}
                    print(f"{label:28s} {wall:6.2f} s, {len(seen):4d} AWS calls "
                          f"({summary.get('limiter_calls', '?')} HTTP attempts through the limiter, "
                          f"{summary.get('throttled', '?')} throttled), {summary.get('up', '?')} of "
                          f"{students} up, {summary.get('healthy', '?')} healthy, exit {result.exit_code}")
                    if parallel == students:
                        # The same command again: every stack exists; nothing to change.
                        result, wall = run("fleet", "up", "--roster", roster, "--parallel", str(parallel),
                                           "--state-dir", state_dir)
                        seen = calls.take()
                        summary = parse_summary(result.output)
                        if result.exit_code != 0 or not summary["parsed"]:
                            show_failure("fleet up again", result)
                        mutating = Counter(op for _, op in seen if is_mutating(op))
                        figures["again"] = {"wall": wall, "calls": len(seen), "exit": result.exit_code,
                                            "mutating": sum(mutating.values()), "mutating_ops": dict(mutating),
                                            **summary}
                        print(f"{'fleet up again':28s} {wall:6.2f} s, {len(seen):4d} AWS calls, "
                              f"{sum(mutating.values())} mutating {dict(mutating) or ''}, "
                              f"{summary.get('changed', '?')} resource(s) changed, exit {result.exit_code}")
                finally:
                    restore()
    finally:
        calls.restore()
        spy.restore()
    return figures


# --------------------------------------------------------------------------------------------
# 2. the shared limiter against the account's API rate limit
# --------------------------------------------------------------------------------------------
def bench_throttling(students: int, scale: float, rate: float, burst: float, state_root: str,
                     bucket_first: bool = False) -> dict:
    from moto import mock_aws

    from provisioner.commands import fleet
    from strict import StrictAws

    print(f"\n== 2. fleet up --no-wait of {students} students against an account limit of {rate:g} requests/s "
          f"(a bucket of {burst:g}), AWS-like waits scaled by {scale:g} ==")
    figures: dict = {}
    calls = CallCounter()
    spy = LimiterSpy()
    try:
        for label, disabled in ((f"limiter on ({fleet.FLEET_API_RATE:g}/s)", False), ("limiter off (1e6/s)", True)):
            spy.rate, spy.steady = (1e6, True) if disabled else (None, False)
            with mock_aws():
                warm_moto()
                strict = StrictAws(region=REGION, delays=aws_like_delays(scale))
                bucket = AccountBucket(rate, burst)
                run, restore = bucket_cli(strict, [("before-parameter-build", latency_hook(scale))], bucket,
                                          first=bucket_first)
                try:
                    state_dir = tempfile.mkdtemp(dir=state_root)
                    roster = write_roster(tempfile.mkdtemp(dir=state_root), students)
                    result, wall = run("fleet", "up", "--roster", roster, "--no-wait", "--parallel", str(students),
                                       "--state-dir", state_dir)
                finally:
                    restore()
            seen = calls.take()
            summary = parse_summary(result.output)
            if result.exit_code != 0 or not summary["parsed"]:
                show_failure(f"fleet up ({label})", result)
            if not spy.made:
                print(f"!! {label}: no rate limiter was made (the command stopped before building)")
                continue
            limiter = spy.made[-1]
            spy.made.clear()
            figures[label] = {**summary, "wall": wall, "calls": len(seen), "exit": result.exit_code,
                              "requests": bucket.requests, "account_throttled": bucket.throttled,
                              "limiter_throttles": limiter.throttles, "lowest": limiter.lowest,
                              "rate_seen": bucket.requests / wall if wall else 0.0}
            f = figures[label]
            print(f"{label:22s} {wall:6.2f} s, {f.get('up', '?')} of {students} up, {f.get('failed', '?')} failed, "
                  f"exit {result.exit_code}; {len(seen)} AWS calls, {bucket.requests} requests reached the "
                  f"account ({f['rate_seen']:.1f}/s), {bucket.throttled} throttled "
                  f"({limiter.throttles} seen by the limiter); limiter's lowest rate {limiter.lowest:.3g}/s")
            if bucket.throttled:
                times = bucket.times
                print(f"{'':22s} throttled answers between {times[0]:.1f} s and {times[-1]:.1f} s of {wall:.1f} s, "
                      f"{sum(t < times[0] + 1 for t in times)} within a second of the first; most throttled: "
                      f"{dict(bucket.by_operation.most_common(6))}")
    finally:
        spy.rate, spy.steady = None, False
        calls.restore()
        spy.restore()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--students", type=int, default=6, help="students in the roster of part 1 (default 6)")
    parser.add_argument("--scale", type=float, default=0.01, help="multiply every AWS-like latency (default 0.01)")
    parser.add_argument("--poll", type=float, default=0.02, help="poll interval, seconds")
    parser.add_argument("--throttle-students", type=int, default=None,
                        help="students in part 2 (default: --students)")
    parser.add_argument("--account-rate", type=float, default=20.0,
                        help="the account's API rate in part 2, requests/s (default 20)")
    parser.add_argument("--account-burst", type=float, default=None,
                        help="the account's bucket in part 2 (default: twice the rate)")
    parser.add_argument("--limiter-real-time", action="store_true",
                        help="part 1 with the fleet's limiter at its own 20 calls/s of wall-clock time "
                             "(by default its rate is divided by --scale, like every other AWS time)")
    parser.add_argument("--bucket-first", action="store_true",
                        help="part 2 with the account's bucket registered first on every session (it then "
                             "judges each request before the limiter's wait for it); by default it is the "
                             "last before-send handler before moto's")
    parser.add_argument("--skip-up", action="store_true", help="skip part 1")
    parser.add_argument("--skip-throttling", action="store_true", help="skip part 2")
    args = parser.parse_args()

    total_started = time.monotonic()
    home = isolate_environment()
    os.environ["XDG_CONFIG_HOME"] = str(Path(home) / "config")
    os.environ["PROVISION_POLL_INTERVAL"] = str(args.poll)
    os.chdir(ROOT)
    import platform

    load = os.getloadavg()[0]
    cpus = os.cpu_count() or 1
    print(f"provision fleet benchmark: python {platform.python_version()} on {platform.system()} "
          f"{platform.machine()}, {cpus} CPUs, load average {load:.2f} at start")
    if load > 0.5 * cpus:
        print("!! the machine is busy: timings will be noisy; run again when it is idle")

    from provisioner.sandbox import emulator
    from provisioner.commands.fleet import FLEET_API_RATE

    emulator.apply()
    throttle_students = args.throttle_students or args.students
    raise_quotas(max(args.students, throttle_students))
    state_root = tempfile.mkdtemp(prefix="state-", dir=home)

    limiter_rate = None if args.limiter_real_time else FLEET_API_RATE / args.scale
    up = {} if args.skip_up else bench_fleet_up(args.students, args.scale, state_root, limiter_rate)
    burst = args.account_burst if args.account_burst is not None else 2 * args.account_rate
    throttling = {} if args.skip_throttling else bench_throttling(throttle_students, args.scale, args.account_rate,
                                                                  burst, state_root, args.bucket_first)

    total = time.monotonic() - total_started
    print("\n== summary ==")
    rows = []
    if up:
        one = up["one"]["wall"]
        rows.append(("one stack's up (waits for health)", f"{one:.2f} s, {up['one']['calls']} calls", ""))
        for label in ("fleet up --parallel 1", f"fleet up --parallel {args.students}"):
            f = up.get(label)
            if f:
                rows.append((f"{label} ({args.students} students)",
                             f"{f['wall']:.2f} s ({f['wall'] / one:.1f}x one), {f['calls']} calls, "
                             f"{f.get('throttled', '?')} throttled, {f.get('healthy', '?')}/{args.students} healthy",
                             ""))
        again = up.get("again")
        if again:
            rows.append(("fleet up again: wall, AWS calls", f"{again['wall']:.2f} s, {again['calls']} calls", ""))
            rows.append(("fleet up again: mutating calls", f"{again['mutating']}", "0"))
    for label, f in throttling.items():
        rows.append((f"{label}: throttled / failed stacks",
                     f"{f['account_throttled']} / {f.get('failed', '?')}", "few / 0" if " on " in label else ""))
        rows.append((f"{label}: wall, lowest limiter rate",
                     f"{f['wall']:.2f} s, {f['lowest']:.3g}/s", ""))
    if rows:
        width = max(len(r[0]) for r in rows)
        vwidth = max(len(r[1]) for r in rows)
        print(f"{'figure':{width}s}  {'measured':>{vwidth}s}  target")
        for name, value, target in rows:
            print(f"{name:{width}s}  {value:>{vwidth}s}  {target}")
    print(f"(scale {args.scale:g}, poll {args.poll:g} s; fleet limiter {FLEET_API_RATE:g}/s"
          + ("" if args.skip_up else f", {limiter_rate or FLEET_API_RATE:g}/s in part 1") + "; account "
          f"{args.account_rate:g}/s, bucket {burst:g}; benchmark took {total:.1f} s; load average "
          f"{os.getloadavg()[0]:.2f} at the end)")


if __name__ == "__main__":
    main()
