#!/usr/bin/env python3
"""Benchmark for the account-wide commands (run from the repository root):

    python3 bench/bench_cleanup.py               # about 45 s
    python3 bench/bench_cleanup.py --stacks 8 --scale 0.02

It prints figures; it asserts nothing about timing. Two parts:

1. the scan behind `list`, `cleanup`, `reap` and the cost line of `up`/`status`: AWS calls and
   wall time for a region with 0, 1 and N whole stacks, each call taking AWS's read latency
   (0.2 s; `--scan-scale` to change it), against the same reads one after another;
2. `cleanup --all --yes` of N stacks with AWS-like waits (NAT gateway 60 s to delete, load
   balancer interfaces 70 s, instances 60 s to terminate, ...; scaled), one stack at a time
   (`--parallel 1`) and N at a time, against one stack's `down`.

Everything runs in-process on moto with the strict fixture of tests/strict.py, through the CLI's
own code (click's test runner), with the same latency hook as bench_engine.py.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from bench_engine import (READ_LATENCY, REGION, ZONES, aws_like_delays, isolate_environment,  # noqa: E402
                          latency_hook, warm_moto)


def build_stacks(names, state_dir, strict):
    from provisioner.shape.config import StackConfig
    from stacks import Stack

    for name in names:
        results = Stack(name, state_dir, strict, config=StackConfig(zones=list(ZONES))).up()
        assert all(r.ok for r in results), [(r.name, r.detail) for r in results if not r.ok]


def hooked_cli(strict, hooks):
    """The CLI in-process, every context it makes talking through the strict rules and hooks."""
    from click.testing import CliRunner

    from provisioner.cli.main import main
    from provisioner.commands.runner import Connection
    from stacks import make_session

    original = Connection.context

    def context(self, stack, region, config, reporter):
        ctx = original(self, stack, region, config, reporter)
        ctx._session_factory = lambda: make_session(strict, hooks)
        return ctx

    Connection.context = context

    def run(*args):
        started = time.perf_counter()
        result = CliRunner().invoke(main, [*args, "--region", REGION], env={"COLUMNS": "200"})
        return result, time.perf_counter() - started

    return run, lambda: setattr(Connection, "context", original)


def bench_scan(counts, scale, state_root):
    from moto import mock_aws

    from provisioner.shape.config import StackConfig
    from provisioner.engine.context import RunContext
    from provisioner.account.inventory import scan
    from stacks import make_session
    from strict import StrictAws

    print(f"\n== 1. the scan of one region (reads take {READ_LATENCY:g} s on AWS -> "
          f"{READ_LATENCY * scale * 1000:.0f} ms here) ==")
    rows = []
    for n in counts:
        with mock_aws():
            warm_moto()
            strict = StrictAws(region=REGION)
            build_stacks([f"lab-{i}" for i in range(n)], tempfile.mkdtemp(dir=state_root), strict)
            calls = Counter()
            ctx = RunContext(stack="bench", region=REGION, config=StackConfig(), poll_interval=0.02,
                             session_factory=lambda: make_session(strict, [("before-parameter-build",
                                                                             latency_hook(scale, calls))]))
            ctx.account = "123456789012"
            ctx.client("ec2")  # botocore's model loading, as the CLI's preflight does first
            started = time.perf_counter()
            found = scan(ctx)
            wall = time.perf_counter() - started
        ncalls = sum(calls.values())
        rows.append((n, len(found), ncalls, wall))
        # One after another, the reads alone would take calls x latency; moto's own time per
        # call (a few ms in-process) is in the wall time too.
        print(f"{n:3d} stack(s): {len(found):4d} resources, {ncalls:3d} calls, {wall:.3f} s "
              f"(the reads one after another: {ncalls * READ_LATENCY * scale:.3f} s)")
    return rows


def bench_cleanup(n, scale, poll, state_root):
    from moto import mock_aws

    from strict import StrictAws

    print(f"\n== 2. cleanup of {n} whole stacks with AWS-like waits, scaled by {scale:g} ==")
    os.environ["PROVISION_POLL_INTERVAL"] = str(poll)
    figures = {}
    for label, parallel, stacks in (("one stack's `cleanup --stack`", 1, 1),
                                    (f"{n} stacks, --parallel 1", 1, n),
                                    (f"{n} stacks, --parallel {n}", n, n)):
        with mock_aws():
            warm_moto()
            strict = StrictAws(region=REGION, delays=aws_like_delays(scale))
            state_dir = tempfile.mkdtemp(dir=state_root)
            build_stacks([f"lab-{i}" for i in range(stacks)], state_dir, StrictAws(region=REGION))
            run, restore = hooked_cli(strict, [("before-parameter-build", latency_hook(scale))])
            try:
                result, wall = run("cleanup", "--all", "--yes", "--parallel", str(parallel), "--state-dir", state_dir)
            finally:
                restore()
        left = "0 resources left" in result.output
        figures[label] = wall
        print(f"{label:34s} {wall:6.2f} s, exit {result.exit_code}, {'nothing left' if left else 'SOMETHING LEFT'}")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=0.01, help="multiply every AWS-like latency")
    parser.add_argument("--scan-scale", type=float, default=1.0,
                        help="multiply the read latency in part 1 (default 1: AWS's own 0.2 s per read)")
    parser.add_argument("--stacks", type=int, default=4, help="stacks in the multi-stack figures")
    parser.add_argument("--poll", type=float, default=0.02, help="poll interval, seconds")
    args = parser.parse_args()
    home = isolate_environment()
    os.environ["XDG_CONFIG_HOME"] = str(Path(home) / "config")
    os.chdir(ROOT)
    from provisioner.sandbox import emulator

    emulator.apply()
    state_root = tempfile.mkdtemp(prefix="state-", dir=home)
    scans = bench_scan((0, 1, args.stacks), args.scan_scale, state_root)
    cleanup = bench_cleanup(args.stacks, args.scale, args.poll, state_root)
    print("\n== summary ==")
    for n, resources, calls, wall in scans:
        print(f"scan, {n} stack(s): {calls} calls in {wall:.2f} s; one after another "
              f"{calls * READ_LATENCY * args.scan_scale:.2f} s")
    one = next(iter(cleanup.values()))
    for label, wall in cleanup.items():
        print(f"cleanup, {label}: {wall:.2f} s ({wall / one:.1f}x one stack)")


if __name__ == "__main__":
    main()
