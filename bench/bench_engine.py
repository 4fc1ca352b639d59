#!/usr/bin/env python3
"""Benchmark for provision's step engine (run from the repository root):

    python3 bench/bench_engine.py            # everything, about 30 s
    python3 bench/bench_engine.py --reps 5   # more repetitions of the timed up/down
    python3 bench/bench_engine.py --scale 0.02 --help-runs 20

It prints figures; it asserts nothing about timing. Three parts, as the issue asks:

1. no-op `up`: a second `up` on an existing stack (moto in-process, strict fixture): the number
   of mutating calls (should be 0) and reads per resource (should be about 1).
2. `provision --help`: start-up time in a fresh interpreter, and which heavy modules it imports.
3. `up` and `down` with AWS-like latencies scaled down (NAT gateway 90 s to create, 60 s to
   delete, ...): wall time against the longest dependency chain (critical path) of the measured
   step durations, and against the plain sum of all step durations.

See bench/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # for tests/strict.py (StrictAws, Delays)

REGION = "us-east-1"
ACCOUNT = "123456789012"
ZONES = ["us-east-1a", "us-east-1b"]
STACK = "benchstack"


def isolate_environment() -> str:
    """Never reach a real account or read the developer's AWS config (as tests/conftest.py does)."""
    for var in list(os.environ):
        if var.startswith("AWS_") or var.startswith("PROVISION_"):
            del os.environ[var]
    home = tempfile.mkdtemp(prefix="provision-bench-")
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
                      AWS_CONFIG_FILE=str(Path(home) / "aws-config"),
                      AWS_SHARED_CREDENTIALS_FILE=str(Path(home) / "aws-credentials"),
                      AWS_DEFAULT_REGION=REGION)
    return home


# --------------------------------------------------------------------------------------------
# AWS-like latencies, in real-AWS seconds; multiplied by --scale (default 1/100).
# --------------------------------------------------------------------------------------------
# Per API call: the time the call itself takes before AWS answers. Reads are ~0.1-0.3 s on AWS.
READ_LATENCY = 0.2
CALL_LATENCY = {
    "CreateVpc": 2.0, "ModifyVpcAttribute": 0.5, "CreateSubnet": 1.0, "ModifySubnetAttribute": 0.5,
    "CreateInternetGateway": 1.0, "AttachInternetGateway": 2.0, "AllocateAddress": 1.0,
    "CreateNatGateway": 1.0, "CreateRouteTable": 1.0, "CreateRoute": 1.0, "ReplaceRoute": 1.0,
    "AssociateRouteTable": 1.0, "CreateSecurityGroup": 1.0, "AuthorizeSecurityGroupIngress": 1.0,
    "CreateTags": 0.5,
    "DeleteNatGateway": 1.0, "ReleaseAddress": 1.0, "DisassociateRouteTable": 1.0,
    "DeleteRouteTable": 1.0, "DeleteSecurityGroup": 1.0, "DeleteSubnet": 1.0,
    "DetachInternetGateway": 2.0, "DeleteInternetGateway": 1.0, "DeleteVpc": 2.0,
    # The compute and edge tier.
    "CreateBucket": 1.0, "PutObject": 0.3, "DeleteObjects": 0.5, "CreateRole": 1.0,
    "ImportCertificate": 1.0, "CreateLoadBalancer": 2.0, "CreateTargetGroup": 0.5,
    "CreateListener": 0.5, "CreateRule": 0.5, "CreateLaunchTemplate": 0.5,
    "CreateAutoScalingGroup": 1.0, "DeleteLoadBalancer": 1.0, "DeleteAutoScalingGroup": 1.0,
}
DEFAULT_MUTATING_LATENCY = 1.0
# State transitions, enforced by tests/strict.py's StrictAws on top of moto:
NAT_CREATE = 90.0    # NAT gateway `pending` -> `available`
NAT_DELETE = 60.0    # NAT gateway `deleting` -> `deleted`
ENI_RELEASE = 20.0   # its interface and Elastic IP association linger this long after `deleted`
ALB_CREATE = 180.0   # load balancer `provisioning` -> `active`
ALB_DELETE = 10.0    # a deleted load balancer still holds its subnets and group
ALB_ENI_RELEASE = 60.0  # and its network interfaces linger this much longer
INSTANCE_TERMINATE = 60.0  # shutting-down -> terminated
PROFILE_PROPAGATION = 10.0  # a new instance profile is refused by Auto Scaling
CERTIFICATE_RELEASE = 10.0  # ACM still counts a deleted listener
# The data tier (--data-tier): RDS is the longest wait of any stack the tool builds.
DB_CREATE = 420.0           # single-AZ `creating` -> `available`
DB_CREATE_MULTI_AZ = 900.0  # with its standby
DB_DELETE = 360.0           # `deleting`, still holding its subnets and group
TABLE_CREATE = 10.0         # DynamoDB CREATING -> ACTIVE
TABLE_DELETE = 10.0


def aws_like_delays(scale: float):
    from strict import Delays

    return Delays(nat_create=NAT_CREATE * scale, nat_delete=NAT_DELETE * scale, eni_release=ENI_RELEASE * scale,
                  alb_create=ALB_CREATE * scale, alb_delete=ALB_DELETE * scale,
                  alb_eni_release=ALB_ENI_RELEASE * scale, instance_terminate=INSTANCE_TERMINATE * scale,
                  profile_propagation=PROFILE_PROPAGATION * scale,
                  certificate_release=CERTIFICATE_RELEASE * scale, db_create=DB_CREATE * scale,
                  db_create_multi_az=DB_CREATE_MULTI_AZ * scale, db_delete=DB_DELETE * scale,
                  table_create=TABLE_CREATE * scale, table_delete=TABLE_DELETE * scale)


def latency_hook(scale: float, counter: Counter | None = None):
    """A `before-parameter-build` handler: every AWS call sleeps its AWS-like latency. That
    event fires for every call (unlike before-call, which StrictAws's refusals short-circuit)."""
    from provisioner.engine.context import is_mutating

    def handler(model, **_):
        op = model.name
        seconds = CALL_LATENCY.get(op, DEFAULT_MUTATING_LATENCY) if is_mutating(op) else READ_LATENCY
        if counter is not None:
            counter[op] += 1
        time.sleep(seconds * scale)

    return handler


# --------------------------------------------------------------------------------------------
# Running the engine in-process on moto (as tests/stacks.py's Stack does)
# --------------------------------------------------------------------------------------------
class CallLog:
    """A Reporter that keeps every AWS call with the step that made it."""

    def __init__(self):
        from provisioner.engine.context import Reporter

        class _Reporter(Reporter):
            def __init__(inner):
                inner.calls = []
                inner.lock = threading.Lock()

            def call(inner, step, service, operation, status, seconds):
                with inner.lock:
                    inner.calls.append((step, service, operation, status, seconds))

        self.reporter = _Reporter()


class Harness:
    """One stack on one moto backend; builds the engine like the CLI and tests do, and wraps the
    engine's walk, per-step runner and state saves with timers (the engine itself is untouched)."""

    def __init__(self, state_dir: str, strict, hooks=(), poll: float = 0.02, config=None,
                 write_state: bool = True):
        from provisioner.shape.config import StackConfig
        from provisioner.engine.state import StateFile

        self.state_file = StateFile(state_dir, STACK)
        self.strict = strict
        self.hooks = list(hooks)
        self.poll = poll
        self.config = config or StackConfig(zones=list(ZONES))
        self.save_seconds = 0.0
        self.saves = 0
        # write_state=False (a diagnostic): the state stays in memory and saves write nothing, to
        # show what the engine's per-step state writes cost.
        self.write_state = write_state
        self.memory_state = None
        original_save = self.state_file.save

        def timed_save(state):
            started = time.perf_counter()
            if self.write_state:
                original_save(state)
            self.save_seconds += time.perf_counter() - started
            self.saves += 1

        self.state_file.save = timed_save

    def session(self):
        from stacks import make_session

        return make_session(self.strict, self.hooks)

    def engine(self, superset: bool = False):
        from provisioner.shape.config import StackConfig
        from provisioner.engine.context import RunContext
        from provisioner.engine.engine import Engine
        from provisioner.engine.registry import build_steps
        from provisioner.engine.state import StackState

        state = self.state_file.load_for(ACCOUNT, REGION) if self.write_state else self.memory_state
        config = StackConfig.from_dict(state.config) if state and state.config else self.config
        if superset:
            config = config.superset()
        log = CallLog()
        ctx = RunContext(stack=STACK, region=REGION, config=config, poll_interval=self.poll,
                         session_factory=self.session, reporter=log.reporter)
        ctx.account = ACCOUNT
        if state is None:
            state = StackState(stack=STACK, account=ACCOUNT, region=REGION, config=config.to_dict())
        ctx.generation = state.generation
        self.memory_state = state
        engine = Engine(ctx, build_steps(config), state, self.state_file)
        # The CLI creates the EC2 client before the engine runs (preflight's zone lookup); so do
        # we, and time it apart: it is botocore loading the EC2 model, not the engine's work.
        started = time.perf_counter()
        ctx.ec2  # noqa: B018
        engine.bench_client_seconds = time.perf_counter() - started
        engine.bench_calls = log.reporter.calls
        engine.bench_walks = []    # [(active, started, ended, results)] (monotonic)
        engine.bench_spans = {}    # active -> {step: (start, end)} (monotonic)
        self.saves, self.save_seconds = 0, 0.0
        original_walk, original_run_one = engine._walk, engine._run_one

        # Signature-agnostic wrappers: they only need the walk's `active` label and the step.
        def walk(*args, **kwargs):
            started = time.monotonic()
            results = original_walk(*args, **kwargs)
            engine.bench_walks.append((kwargs.get("active"), started, time.monotonic(), results))
            return results

        def run_one(*args, **kwargs):
            from provisioner.engine.engine import ReadyPhase
            from provisioner.engine.registry import READY_NODE

            step = next(a for a in args if hasattr(a, "depends_on") or isinstance(a, ReadyPhase))
            # A step's wait until ready (on `up`) is a node of its own in the walk's graph.
            node = READY_NODE.format(step.name) if isinstance(step, ReadyPhase) else step.name
            active = kwargs.get("active", args[-1])
            started = time.monotonic()
            result = original_run_one(*args, **kwargs)
            engine.bench_spans.setdefault(active, {})[node] = (started, time.monotonic())
            return result

        engine._walk, engine._run_one = walk, run_one
        return engine

    def timed(self, command: str, superset: bool = False):
        engine = self.engine(superset=superset)
        started = time.monotonic()
        results = getattr(engine, command)()
        wall = time.monotonic() - started
        return engine, results, wall


def warm_moto():
    """moto builds a region's EC2 backend (AMIs, instance types, default VPC) on first use, about
    half a second; do it before timing so it does not land in the first step."""
    import boto3

    ec2 = boto3.client("ec2", region_name=REGION)
    ec2.describe_vpcs()
    ec2.describe_nat_gateways()
    ec2.describe_addresses()


# --------------------------------------------------------------------------------------------
# Critical path
# --------------------------------------------------------------------------------------------
def walk_graph(steps: dict, active: str) -> dict[str, set[str]]:
    """The graph the engine walks for `creating`, `finding` (down's lookups) or `deleting`."""
    from provisioner.engine.registry import dependency_graph, lookup_graph, up_graph

    if active == "finding":
        return lookup_graph(steps)
    if active == "creating":
        return up_graph(steps)
    return dependency_graph(steps, reverse=(active == "deleting"))


def critical_path(graph: dict[str, set[str]], durations: dict[str, float]) -> tuple[float, list[str]]:
    """The longest chain through the walk's graph, weighting each step by its duration."""
    from graphlib import TopologicalSorter

    finish: dict[str, float] = {}
    via: dict[str, str | None] = {}
    for name in TopologicalSorter(graph).static_order():
        before = max(graph[name], key=lambda p: finish[p], default=None)
        finish[name] = durations.get(name, 0.0) + (finish[before] if before else 0.0)
        via[name] = before
    end = max(finish, key=finish.get)
    chain = [end]
    while via[chain[-1]]:
        chain.append(via[chain[-1]])
    return finish[end], list(reversed(chain))


def dispatch_lags(graph: dict[str, set[str]], spans: dict[str, tuple[float, float]],
                  t0: float) -> dict[str, float]:
    """For every step: how long after its last dependency finished (or after the walk began, for a
    step with none) the engine started it. Pure engine overhead."""
    lags = {}
    for name, (start, _) in spans.items():
        ready = max((spans[d][1] for d in graph[name] if d in spans), default=t0)
        lags[name] = max(0.0, start - ready)
    return lags


# --------------------------------------------------------------------------------------------
# 1. no-op up
# --------------------------------------------------------------------------------------------
def bench_noop_up(state_root: str) -> dict:
    from moto import mock_aws

    from provisioner.engine.context import is_mutating
    from strict import StrictAws

    with mock_aws():
        warm_moto()
        strict = StrictAws(region=REGION, delays=aws_like_delays(0))
        harness = Harness(tempfile.mkdtemp(dir=state_root), strict)
        _, first, first_wall = harness.timed("up")
        engine, second, wall = harness.timed("up")
    calls = engine.ctx.calls
    mutating = [op for _, op in calls if is_mutating(op)]
    per_step = defaultdict(list)
    for step, _, op, _, _ in engine.bench_calls:
        per_step[step].append(op)
    steps = len(engine.steps)
    outcomes = Counter(r.outcome for r in second)
    figures = {
        "steps": steps,
        "first_up_outcomes": dict(Counter(r.outcome for r in first)),
        "outcomes": dict(outcomes),
        "calls": len(calls),
        "mutating": len(mutating),
        "mutating_ops": dict(Counter(mutating)),
        "reads_per_resource": (len(calls) - len(mutating)) / steps,
        "max_reads_one_step": max((len(v) for v in per_step.values()), default=0),
        "per_operation": dict(Counter(op for _, op in calls).most_common()),
        "per_step": {name: per_step.get(name, []) for name in engine.steps},
        "wall": wall,
        "first_wall": first_wall,
    }

    print("\n== 1. no-op `up` on an existing stack (moto in-process, strict fixture, no delays) ==")
    print(f"first up: {figures['first_up_outcomes']} in {first_wall:.3f} s")
    print(f"second up: outcomes {figures['outcomes']}, {len(calls)} AWS calls for {steps} steps, "
          f"{len(mutating)} mutating {figures['mutating_ops'] or ''}")
    print(f"reads per resource: {figures['reads_per_resource']:.2f} "
          f"(most in one step: {figures['max_reads_one_step']}); wall {wall:.3f} s")
    print("calls per operation:")
    for op, n in figures["per_operation"].items():
        print(f"  {n:3d}  {op}")
    print("calls per step:")
    for name, ops in figures["per_step"].items():
        print(f"  {len(ops):3d}  {name:32s} {', '.join(ops)}")
    return figures


# --------------------------------------------------------------------------------------------
# 2. provision --help
# --------------------------------------------------------------------------------------------
HEAVY_MODULES = ["boto3", "botocore", "rich", "moto", "tenacity", "paramiko", "cryptography",
                 "provisioner.engine.engine", "provisioner.commands.runner", "provisioner.engine.context"]


def _median_run(argv: list[str], runs: int, env: dict) -> tuple[float, int]:
    times, code = [], 0
    for _ in range(runs):
        started = time.perf_counter()
        proc = subprocess.run(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - started)
        code = proc.returncode
    return statistics.median(times), code


def bench_help(runs: int) -> dict:
    env = dict(os.environ)
    figures: dict = {}
    print(f"\n== 2. `provision --help` start-up (median of {runs} runs, fresh interpreter each) ==")
    figures["python_bare"], _ = _median_run([sys.executable, "-c", "pass"], runs, env)
    figures["python_m"], code = _median_run([sys.executable, "-m", "provisioner.cli.main", "--help"], runs, env)
    print(f"python -c pass (interpreter alone)        {figures['python_bare'] * 1000:7.1f} ms")
    print(f"python -m provisioner.cli.main --help          {figures['python_m'] * 1000:7.1f} ms  (exit {code})")
    on_path = shutil.which("provision")
    figures["console_script"] = figures["console_script_direct"] = None
    if on_path:
        figures["console_script"], code = _median_run([on_path, "--help"], runs, env)
        print(f"provision --help ({on_path})  {figures['console_script'] * 1000:7.1f} ms  (exit {code})")
        # A pyenv shim is a shell script that runs `pyenv exec`; time the real script as well.
        if "shims" in on_path and shutil.which("pyenv"):
            real = subprocess.run(["pyenv", "which", "provision"], capture_output=True, text=True).stdout.strip()
            if real and Path(real).exists():
                figures["console_script_direct"], code = _median_run([real, "--help"], runs, env)
                figures["console_script_direct_path"] = real
                print(f"provision --help ({real}, no shim)  "
                      f"{figures['console_script_direct'] * 1000:7.1f} ms  (exit {code})")
    else:
        print("provision: not on PATH (pip install -e . to get the console script)")

    probe = ("import sys, json, io, contextlib\n"
             "from provisioner.cli import main as cli\n"
             "with contextlib.redirect_stdout(io.StringIO()):\n"
             "    try:\n"
             "        cli.main(['--help'])\n"
             "    except SystemExit:\n"
             "        pass\n"
             f"print(json.dumps({{m: m in sys.modules for m in {HEAVY_MODULES!r}}}))\n")
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True)
    try:
        loaded = json.loads(out.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        loaded = {"error": out.stderr.strip()[-300:]}
    figures["modules_loaded"] = loaded
    print("imported by --help: " + ", ".join(f"{m}={'yes' if v else 'no'}" for m, v in loaded.items()))

    imp = subprocess.run([sys.executable, "-X", "importtime", "-m", "provisioner.cli.main", "--help"],
                         cwd=ROOT, env=env, capture_output=True, text=True)
    top = []
    for line in imp.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \| ( *)(\S+)", line)
        if m and not m.group(3):  # top-level imports only (no indent)
            top.append((int(m.group(2)), m.group(4)))
    top.sort(reverse=True)
    figures["importtime_top"] = top[:8]
    print("python -X importtime, top-level imports by cumulative time:")
    for us, name in top[:8]:
        print(f"  {us / 1000:7.1f} ms  {name}")
    return figures


# --------------------------------------------------------------------------------------------
# 3. up and down with AWS-like waits
# --------------------------------------------------------------------------------------------
def analyse_walk(engine, active: str) -> dict:
    """Critical path, sum and engine overhead of one walk (`creating`, `finding` or `deleting`)."""
    _, started, ended, results = next(w for w in engine.bench_walks if w[0] == active)
    durations = {r.name: r.seconds for r in results}
    graph = walk_graph(engine.steps, active)
    cp, chain = critical_path(graph, durations)
    spans = engine.bench_spans.get(active, {})
    lags = dispatch_lags(graph, spans, started) or {"-": 0.0}
    last_end = max((e for _, e in spans.values()), default=ended)
    return {"wall": ended - started, "cp": cp, "chain": chain, "sum": sum(durations.values()),
            "durations": durations, "lag_max": max(lags.values()), "lag_mean": statistics.mean(lags.values()),
            # where the walk's time beyond its critical path goes: the engine starting each step of
            # the longest chain late, and the time after the last step ends (its record, shutdown)
            "chain_lag": sum(lags.get(n, 0.0) for n in chain), "tail": max(0.0, ended - last_end),
            "outcomes": dict(Counter(r.outcome for r in results)),
            "not_ok": [(r.name, r.outcome, r.detail) for r in results if not r.ok]}


def bench_waits(state_root: str, scale: float, reps: int, poll: float, nat_per_az: bool,
                write_state: bool = True, data_tier: bool = False) -> dict:
    from moto import mock_aws

    from provisioner.shape.config import StackConfig
    from strict import StrictAws

    runs = []
    for _ in range(reps):
        with mock_aws():
            warm_moto()
            strict = StrictAws(region=REGION, delays=aws_like_delays(scale))
            harness = Harness(tempfile.mkdtemp(dir=state_root), strict, poll=poll,
                              hooks=[("before-parameter-build", latency_hook(scale))],
                              config=StackConfig(zones=list(ZONES), nat_per_az=nat_per_az, **(
                                  DATA_TIER if data_tier else {})),
                              write_state=write_state)
            up_engine, _, up_wall = harness.timed("up")
            up_saves = (harness.saves, harness.save_seconds)
            up_calls = len(up_engine.ctx.calls)
            down_engine, _, down_wall = harness.timed("down", superset=True)
            down_saves = (harness.saves, harness.save_seconds)
        up = analyse_walk(up_engine, "creating")
        discovery = analyse_walk(down_engine, "finding")
        deletion = analyse_walk(down_engine, "deleting")
        runs.append({
            "up_wall": up_wall, "up": up, "up_saves": up_saves, "up_calls": up_calls,
            "down_wall": down_wall, "discovery": discovery, "deletion": deletion,
            "down_saves": down_saves, "down_calls": len(down_engine.ctx.calls),
            "refusals": Counter("/".join(str(x) for x in r[1:]) for r in strict.refusals),  # code[/kind]
        })
    return {"runs": runs, "nat_per_az": nat_per_az}


# The data tier's longest waits: a Multi-AZ database, and the catalog's tables.
DATA_TIER = {"database": "postgres", "db_multi_az": True, "catalog": "dynamodb"}


def summarise_waits(label: str, data: dict) -> dict:
    """Medians over the repetitions (and the best repetition's overhead: the least disturbed by
    anything else running on the machine)."""
    runs = data["runs"]
    for r in runs:
        r["down_cp"] = r["discovery"]["cp"] + r["deletion"]["cp"]
        r["up_over"] = r["up_wall"] / r["up"]["cp"] - 1
        r["down_over"] = r["down_wall"] / r["down_cp"] - 1
        # time spent in up()/down() outside the walks: state saves before and after, outputs
        r["up_outside"] = r["up_wall"] - r["up"]["wall"]
        r["down_outside"] = r["down_wall"] - r["discovery"]["wall"] - r["deletion"]["wall"]

    def med(fn):
        return statistics.median(fn(r) for r in runs)

    s = {"label": label, "reps": len(runs),
         "up_chain": runs[0]["up"]["chain"], "down_chain": runs[0]["deletion"]["chain"],
         "refusals": dict(sum((r["refusals"] for r in runs), Counter())),
         "not_ok": [x for r in runs for x in r["up"]["not_ok"] + r["deletion"]["not_ok"]],
         "up_over_min": min(r["up_over"] for r in runs), "down_over_min": min(r["down_over"] for r in runs)}
    for key, fn in {
        "up_wall": lambda r: r["up_wall"], "up_cp": lambda r: r["up"]["cp"], "up_sum": lambda r: r["up"]["sum"],
        "up_over": lambda r: r["up_over"], "up_calls": lambda r: r["up_calls"],
        "up_lag_mean": lambda r: r["up"]["lag_mean"], "up_lag_max": lambda r: r["up"]["lag_max"],
        "up_chain_lag": lambda r: r["up"]["chain_lag"], "up_tail": lambda r: r["up"]["tail"],
        "up_outside": lambda r: r["up_outside"], "up_saves": lambda r: r["up_saves"][1],
        "up_nsaves": lambda r: r["up_saves"][0],
        "down_wall": lambda r: r["down_wall"], "down_cp": lambda r: r["down_cp"],
        "down_sum": lambda r: r["discovery"]["sum"] + r["deletion"]["sum"], "down_over": lambda r: r["down_over"],
        "down_calls": lambda r: r["down_calls"],
        "disc_wall": lambda r: r["discovery"]["wall"], "disc_cp": lambda r: r["discovery"]["cp"],
        "disc_calls": lambda r: r["discovery"]["calls"] if "calls" in r["discovery"] else 0,
        "del_wall": lambda r: r["deletion"]["wall"], "del_cp": lambda r: r["deletion"]["cp"],
        "del_sum": lambda r: r["deletion"]["sum"], "del_over": lambda r: r["deletion"]["wall"] / r["deletion"]["cp"] - 1,
        "del_lag_mean": lambda r: r["deletion"]["lag_mean"], "del_lag_max": lambda r: r["deletion"]["lag_max"],
        "down_chain_lag": lambda r: r["discovery"]["chain_lag"] + r["deletion"]["chain_lag"],
        "down_tail": lambda r: r["discovery"]["tail"] + r["deletion"]["tail"],
        "down_outside": lambda r: r["down_outside"], "down_saves": lambda r: r["down_saves"][1],
        "down_nsaves": lambda r: r["down_saves"][0],
    }.items():
        s[key] = med(fn)

    ms = 1000
    print(f"\n-- {label} (median of {len(runs)}) --")
    if s["not_ok"]:
        print(f"!! steps that did not succeed: {s['not_ok'][:5]}")
    print(f"up:   wall {s['up_wall']:.3f} s | critical path {s['up_cp']:.3f} s | sum of steps {s['up_sum']:.3f} s"
          f" | overhead {s['up_over'] * 100:+.1f}% (best rep {s['up_over_min'] * 100:+.1f}%) | {s['up_calls']:.0f} calls")
    print(f"      longest chain: {' -> '.join(s['up_chain'])}")
    print(f"      where the {(s['up_wall'] - s['up_cp']) * ms:.0f} ms over the path go: late starts along the chain "
          f"{s['up_chain_lag'] * ms:.0f} ms, after the last step {s['up_tail'] * ms:.0f} ms, outside the walk "
          f"{s['up_outside'] * ms:.0f} ms")
    print(f"      dispatch lag per step: mean {s['up_lag_mean'] * ms:.1f} ms, max {s['up_lag_max'] * ms:.1f} ms; "
          f"{s['up_nsaves']:.0f} state saves, {s['up_saves'] * ms:.0f} ms in all (main thread)")
    print(f"down: wall {s['down_wall']:.3f} s | critical path {s['down_cp']:.3f} s "
          f"(discovery {s['disc_cp']:.3f} + deletion {s['del_cp']:.3f}) | sum of steps {s['down_sum']:.3f} s"
          f" | overhead {s['down_over'] * 100:+.1f}% (best rep {s['down_over_min'] * 100:+.1f}%) | {s['down_calls']:.0f} calls")
    print(f"      discovery walk {s['disc_wall']:.3f} s, deletion walk {s['del_wall']:.3f} s "
          f"(deletion alone: {s['del_over'] * 100:+.1f}% over its own chain)")
    print(f"      longest deletion chain: {' -> '.join(s['down_chain'])}")
    print(f"      where the {(s['down_wall'] - s['down_cp']) * ms:.0f} ms over the path go: late starts along the "
          f"chains {s['down_chain_lag'] * ms:.0f} ms, after the last steps {s['down_tail'] * ms:.0f} ms, outside "
          f"the walks {s['down_outside'] * ms:.0f} ms")
    print(f"      dispatch lag per step (deletion): mean {s['del_lag_mean'] * ms:.1f} ms, max {s['del_lag_max'] * ms:.1f} ms; "
          f"{s['down_nsaves']:.0f} state saves, {s['down_saves'] * ms:.0f} ms in all (main thread)")
    print("      per rep, up / down overhead: "
          + ", ".join(f"{r['up_over'] * 100:+.1f}% / {r['down_over'] * 100:+.1f}%" for r in runs))
    if s["refusals"]:
        print(f"      AWS refusals met and retried (all reps, code/kind): {s['refusals']}")
    return s


def per_step_table(data: dict) -> None:
    run = data["runs"][0]
    up, dele = run["up"]["durations"], run["deletion"]["durations"]
    disc = run["discovery"]["durations"]
    print("per-step seconds (first rep): step, up, down discovery, down deletion")
    for name in dele:
        print(f"  {name:32s} {up.get(name, float('nan')):7.3f} {disc.get(name, 0):7.3f} {dele.get(name, 0):7.3f}")


# --------------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=0.01,
                        help="multiply every AWS-like latency (default 0.01: NAT 90 s -> 0.9 s)")
    parser.add_argument("--reps", type=int, default=3, help="repetitions of each timed up/down (median)")
    parser.add_argument("--poll", type=float, default=0.02, help="engine poll interval, seconds")
    parser.add_argument("--help-runs", type=int, default=10, help="runs of `provision --help` (median)")
    parser.add_argument("--skip-help", action="store_true", help="skip part 2")
    parser.add_argument("--skip-data-tier", action="store_true", help="skip the up/down with the data tier")
    parser.add_argument("--skip-diagnostics", action="store_true",
                        help="skip the two diagnostic runs (state writes off; 3x longer waits)")
    args = parser.parse_args()

    total_started = time.monotonic()
    home = isolate_environment()
    os.chdir(ROOT)
    import platform

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    cpus = os.cpu_count() or 1
    print(f"provision engine benchmark: python {platform.python_version()} on {platform.system()} "
          f"{platform.machine()}, {cpus} CPUs, load average {load:.2f} at start")
    if load > 0.5 * cpus:
        print("!! the machine is busy: timings (the overhead percentages most) will be noisy; "
              "run again when it is idle")

    from provisioner import __version__

    from provisioner.sandbox import emulator
    from provisioner.engine.engine import DEFAULT_WORKERS

    emulator.apply()
    import boto3
    import moto

    print(f"provision {__version__}, boto3 {boto3.__version__}, moto {moto.__version__}, "
          f"{DEFAULT_WORKERS} workers")
    state_root = tempfile.mkdtemp(prefix="state-", dir=home)

    noop = bench_noop_up(state_root)
    help_figures = None if args.skip_help else bench_help(args.help_runs)

    scale = args.scale
    print(f"\n== 3. up and down with AWS-like waits, scaled by {scale:g} (poll {args.poll:g} s) ==")
    print(f"NAT create {NAT_CREATE:g} s -> {NAT_CREATE * scale:.3g} s, NAT delete {NAT_DELETE:g} s -> "
          f"{NAT_DELETE * scale:.3g} s, its interface lingers {ENI_RELEASE:g} s -> "
          f"{ENI_RELEASE * scale:.3g} s; load balancer active after {ALB_CREATE:g} s -> {ALB_CREATE * scale:.3g} s, "
          f"its interfaces linger {ALB_DELETE + ALB_ENI_RELEASE:g} s; instances terminate in "
          f"{INSTANCE_TERMINATE:g} s; a new instance profile is refused for {PROFILE_PROPAGATION:g} s; "
          f"mutating calls 0.5-2 s -> "
          f"{0.5 * scale * 1000:.0f}-{2 * scale * 1000:.0f} ms; reads {READ_LATENCY:g} s -> "
          f"{READ_LATENCY * scale * 1000:.0f} ms")
    single = bench_waits(state_root, scale, args.reps, args.poll, nat_per_az=False)
    from provisioner.shape.config import StackConfig
    from provisioner.engine.registry import build_steps

    default_steps = len(build_steps(StackConfig(zones=list(ZONES))))
    all_steps = len(build_steps(StackConfig(zones=list(ZONES)).superset()))
    single_s = summarise_waits(f"single NAT gateway (default, {default_steps} steps; down looks for {all_steps})",
                               single)
    per_step_table(single)
    per_az = bench_waits(state_root, scale, args.reps, args.poll, nat_per_az=True)
    per_az_s = summarise_waits(f"--nat-per-az ({all_steps} steps)", per_az)

    data_s = None
    if not args.skip_data_tier:
        print(f"\n-- with the data tier: RDS PostgreSQL Multi-AZ ({DB_CREATE_MULTI_AZ:g} s to create -> "
              f"{DB_CREATE_MULTI_AZ * scale:.3g} s, {DB_DELETE:g} s to delete), four DynamoDB tables --")
        data = bench_waits(state_root, scale, args.reps, args.poll, nat_per_az=False, data_tier=True)
        data_steps = len(build_steps(StackConfig(zones=list(ZONES), **DATA_TIER)))
        data_s = summarise_waits(f"data tier ({data_steps} steps)", data)
        per_step_table(data)

    diagnostics = []
    if not args.skip_diagnostics:
        print("\n== diagnostics: where the overhead comes from ==")
        no_state = bench_waits(state_root, scale, args.reps, args.poll, nat_per_az=False, write_state=False)
        diagnostics.append(("state writes off", summarise_waits(
            "single NAT, state saves skipped (the engine's per-step state writes cost nothing)", no_state)))
        longer = bench_waits(state_root, 3 * scale, 1, args.poll, nat_per_az=False)
        diagnostics.append((f"scale {3 * scale:g}", summarise_waits(
            f"single NAT, waits 3x longer (scale {3 * scale:g}): is the overhead fixed or proportional?", longer)))

    # ---------------------------------------------------------------------------------------
    total = time.monotonic() - total_started
    print("\n== summary ==")
    rows = [
        ("no-op up: mutating calls", f"{noop['mutating']}", "0"),
        ("no-op up: AWS calls for the steps", f"{noop['calls']} for {noop['steps']}", ""),
        ("no-op up: reads per resource", f"{noop['reads_per_resource']:.2f}", "about 1"),
        ("no-op up: wall (moto, no delays)", f"{noop['wall']:.3f} s", ""),
    ]
    if help_figures:
        rows.append(("--help: python -m provisioner.cli.main", f"{help_figures['python_m'] * 1000:.0f} ms", "< 300 ms"))
        if help_figures.get("console_script") is not None:
            rows.append(("--help: provision (on PATH)", f"{help_figures['console_script'] * 1000:.0f} ms",
                         "< 300 ms"))
        if help_figures.get("console_script_direct") is not None:
            rows.append(("--help: provision (no pyenv shim)",
                         f"{help_figures['console_script_direct'] * 1000:.0f} ms", "< 300 ms"))
        rows.append(("--help: bare interpreter (python -c pass)", f"{help_figures['python_bare'] * 1000:.0f} ms", ""))
        loaded = help_figures["modules_loaded"]
        rows.append(("--help imports boto3 / rich",
                     f"{'yes' if loaded.get('boto3') else 'no'} / {'yes' if loaded.get('rich') else 'no'}",
                     "no / no"))
    ms = 1000
    measured = [("single NAT", single_s), ("NAT per AZ", per_az_s)] + ([("data tier", data_s)] if data_s else [])
    for tag, s in measured + diagnostics:
        target = "a few %" if any(s is x for _, x in measured) else "(diagnostic)"
        rows += [
            (f"up   [{tag}] wall | critical path | sum",
             f"{s['up_wall']:.3f} | {s['up_cp']:.3f} | {s['up_sum']:.3f} s", ""),
            (f"up   [{tag}] over the path (best rep)",
             f"{s['up_over'] * 100:+.1f}% ({s['up_over_min'] * 100:+.1f}%), {(s['up_wall'] - s['up_cp']) * ms:.0f} ms",
             target),
            (f"down [{tag}] wall | critical path | sum",
             f"{s['down_wall']:.3f} | {s['down_cp']:.3f} | {s['down_sum']:.3f} s", ""),
            (f"down [{tag}] discovery walk",
             f"{s['disc_wall']:.3f} s", ""),
            (f"down [{tag}] over the path (best rep)",
             f"{s['down_over'] * 100:+.1f}% ({s['down_over_min'] * 100:+.1f}%), "
             f"{(s['down_wall'] - s['down_cp']) * ms:.0f} ms", target),
        ]
    width = max(len(r[0]) for r in rows)
    vwidth = max(len(r[1]) for r in rows)
    print(f"{'figure':{width}s}  {'measured':>{vwidth}s}  target")
    for name, value, target in rows:
        print(f"{name:{width}s}  {value:>{vwidth}s}  {target}")
    print(f"(scale {scale:g}, poll {args.poll:g} s, median of {args.reps} reps; "
          f"benchmark took {total:.1f} s; load average {os.getloadavg()[0]:.2f} at the end)")
    shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
