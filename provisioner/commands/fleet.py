"""Classroom fleets: one stack per student of a roster, built, watched, reported and deleted
together.

`fleet up` runs one engine per student (a few at a time) over one shared endpoint, session and
rate limiter, so that a class of thirty does not trip the account's API limits; a stack that
fails stops only itself, and running the command again finishes what is missing (the engine is
idempotent: a finished stack makes no changing call). Before anything is created the region's
service quotas are compared with what the new stacks need. `fleet status`, `report` and `down`
work from the tags in AWS, like `list` and `cleanup`: every fleet stack carries the roster's name
(provision:roster) and its student (provision:student).
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import dataclasses
import json
import re
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from provisioner.shape.config import DEFAULT_GRACE_PERIOD, StackConfig
from provisioner.engine.context import Reporter, RunContext
from provisioner.engine.engine import CREATED, DELETED, FAILED, INTERRUPTED, KEPT, SKIPPED, UPDATED
from provisioner.engine.errors import EXIT_AWS, EXIT_INTERRUPTED, EXIT_OK, ConfigError, Interrupted, ProvisionError
from provisioner.engine.retries import THROTTLE_CODES, THROTTLE_STATUSES
from provisioner.commands.connection import Connection, GlobalOptions, guarded
from provisioner.ui.console import STYLES, ConsoleReporter, fmt_seconds

# Stacks built at once. Each is an engine of up to 8 workers; the shared limiter, not this
# number, is what keeps the class under the account's API rate.
DEFAULT_FLEET_PARALLEL = 6
# Calls per second the whole fleet may make. EC2's published request rates start at 20/s for
# describe calls (a bucket of 100) and less for most mutating ones; the limiter halves its rate
# at each throttled answer and creeps back up as calls succeed.
FLEET_API_RATE = 20.0
SANDBOX_API_RATE = 400.0


# Throttled answers arrive in bursts (every request in flight when the account's bucket ran
# dry): the rate is halved once per burst, as TCP halves its window once per round trip, not
# once per answer, which would take it to the floor at the first burst.
DECREASE_INTERVAL = 1.0


class RateLimiter:
    """A token bucket shared by every stack of a fleet, with additive increase and
    multiplicative decrease: each HTTP attempt takes a token, a burst of throttled answers
    halves the rate for everyone, and every answer that is not throttled wins back a little."""

    def __init__(self, rate: float, burst: float | None = None, floor: float = 0.5, clock=time.monotonic):
        self.ceiling = self.rate = float(rate)
        self.floor = floor
        self.burst = burst if burst is not None else max(1.0, rate * 2)
        self.tokens = self.burst
        self.clock = clock
        self.updated = clock()
        self.calls = 0
        self.throttles = 0
        self.lowest = self.rate
        self.decreased_at: float | None = None
        self._lock = threading.Lock()

    def acquire(self, cancel: threading.Event | None = None) -> None:
        while True:
            with self._lock:
                now = self.clock()
                self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
                self.updated = now
                if self.tokens >= 1:
                    self.tokens -= 1
                    self.calls += 1
                    return
                wait = (1 - self.tokens) / self.rate
            if cancel is not None:
                if cancel.wait(wait):
                    raise Interrupted()
            else:
                time.sleep(wait)

    def answered(self, code: str | None, status: int | None = None) -> None:
        """One HTTP answer: its error code, and its status for an answer without a body (a
        throttled HEAD is a bare 503, which botocore names by its status)."""
        bare = status in THROTTLE_STATUSES and code in (None, "", str(status))
        with self._lock:
            if code in THROTTLE_CODES or bare:
                self.throttles += 1
                now = self.clock()
                if self.decreased_at is None or now - self.decreased_at >= DECREASE_INTERVAL:
                    self.decreased_at = now
                    self.rate = max(self.floor, self.rate / 2)
                    self.lowest = min(self.lowest, self.rate)
            else:
                self.rate = min(self.ceiling, self.rate + self.ceiling / 50)


# -- one row per student -----------------------------------------------------------------------

QUEUED, BUILDING, WAITING, HEALTHY, UP = "queued", "building", "waiting", "healthy", "up"
STEP_DONE = {CREATED, KEPT, UPDATED, DELETED, "absent", FAILED, SKIPPED, INTERRUPTED}


@dataclass
class FleetRow:
    student: object            # roster.Student
    region: str
    state: str = QUEUED
    step: str = ""
    total: int = 0
    done: set = field(default_factory=set)
    changed: int = 0
    url: str = ""
    health: str = ""
    error: str = ""
    hint: str | None = None
    details: str | None = None  # a traceback, for a bug rather than an expected failure
    started: float | None = None
    seconds: float | None = None


class RowReporter(Reporter):
    """One stack's engine and health wait, reported into its row of the fleet table."""

    def __init__(self, row: FleetRow, lock: threading.Lock):
        self.row, self._lock = row, lock
        self.phases: dict[str, str] = {}

    def step(self, name, state, detail=""):
        with self._lock:
            row = self.row
            if row.state == WAITING:
                self.phases[name] = state
                if state == "terminated":
                    self.phases.pop(name, None)
                healthy = sum(p == HEALTHY for p in self.phases.values())
                row.health = f"{healthy}/{len(self.phases)} healthy"
                return
            if state in STEP_DONE:
                row.done.add(name)
                row.changed += state in (CREATED, UPDATED, DELETED)
            row.step = f"{name}: {state}" + (f" ({detail})" if detail and state not in STEP_DONE else "")


# -- the fleet ---------------------------------------------------------------------------------

class Fleet:
    """The roster, the account, and a connection per region the roster uses."""

    def __init__(self, opts: GlobalOptions, reporter: ConsoleReporter, roster_path: str, roster_name: str | None):
        from provisioner.commands.roster import load_roster

        self.opts, self.reporter = opts, reporter
        self.roster = load_roster(roster_path, name=roster_name)
        self.connection = Connection.open(opts)
        # Every call of the fleet goes through it: the stacks', and the scans and quota reads
        # around them, which draw on the same account allowance.
        self.limiter = RateLimiter(SANDBOX_API_RATE if opts.sandbox else FLEET_API_RATE)
        self.base = self.connection.context("provision", self.connection.region, StackConfig(), Reporter())
        self.base.limiter = self.limiter
        self.account = self.base.account = self.connection.identify(self.base)
        self.by_region = self.roster.regions(self.connection.region)
        self.contexts: list[RunContext] = []
        self._lock = threading.Lock()

    @property
    def regions(self) -> list[str]:
        return sorted(self.by_region)

    def where(self) -> str:
        target = "the sandbox" if self.opts.sandbox else f"account {self.account}"
        return f"roster {self.roster.name!r} ({len(self.roster.students)} students) in {target}, " \
               f"{', '.join(self.regions)}"

    def connection_for(self, region: str) -> Connection:
        return dataclasses.replace(self.connection, region=region)

    def context(self, region: str, stack: str = "provision", config: StackConfig | None = None) -> RunContext:
        ctx = self.connection_for(region).context(stack, region, config or StackConfig(), Reporter())
        ctx._session_factory = lambda: self.base.session
        ctx.account, ctx.owner = self.account, self.base.owner
        ctx.limiter = self.limiter
        return ctx

    def tagged(self):
        """The tool's tagged resources in the roster's regions, grouped by stack, keyed by
        (region, stack); and the errors of regions that could not be read."""
        from provisioner.commands.cleanup import group_stacks, scan_errors
        from provisioner.account.inventory import scan

        found, errors = {}, {}
        for region in self.regions:
            ctx = self.context(region)
            ctx.read_only = True
            try:
                with scan_errors(region):
                    for summary in group_stacks(scan(ctx)):
                        found[(summary.region, summary.stack)] = summary
            except ProvisionError as e:
                errors[region] = e
        return found, errors

    def stack_of(self, student, found):
        """The stack of this student in AWS, if any. A stack of the same name that another
        roster made is not this student's."""
        summary = found.get((student.region or self.connection.region, student.stack))
        if summary is not None and summary.roster not in (None, self.roster.name):
            return None
        return summary


# -- fleet up ----------------------------------------------------------------------------------

def preflight(fleet: Fleet, overrides: dict, found) -> list[str]:
    """The quota check for the stacks the roster still needs, per region; raises ConfigError
    (exit 2) when they do not fit. Returns the lines to show."""
    from provisioner.account.preflight import availability_zones
    from provisioner.account.quotas import Reads, check_quotas, holdings, unfinished

    lines, problems = [], []
    for region, students in sorted(fleet.by_region.items()):
        summaries = [fleet.stack_of(s, found) for s in students]
        new = [s for s, summary in zip(students, summaries) if summary is None]
        ctx = fleet.context(region)
        config = StackConfig().merged(overrides)
        ctx.config = config
        ctx.read_only = True
        # Stacks stopped half-way (a failure, Ctrl-C) still take what they lack when the re-run
        # finishes them: counted as in use, or the check would pass a class that cannot finish.
        existing = [holdings(summary.items) for summary in summaries if summary is not None]
        if not new and not any(unfinished(Reads(ctx, config), held) for held in existing):
            lines.append(f"{region}: all {len(students)} stack(s) exist; no quota needed")
            continue
        if not config.zones:
            config.zones = availability_zones(ctx)
        report = check_quotas(ctx, config, len(new), existing)
        for warning in report.warnings:
            fleet.reporter.warn(f"{region}: {warning}")
        if report.ok:
            rest = f" and the rest of {report.finishing} half-built one(s)" if report.finishing else ""
            lines.append(f"{region}: {len(new)} new stack(s){rest} fit the service quotas (room for {report.fits})")
        else:
            print_quota_table(fleet.reporter, report)
            problems.append(report.message())
    if problems:
        raise ConfigError(" ".join(problems), hint="nothing was created; ask AWS for the increase (the Service Quotas "
                                                   "console, or the command(s) above), or shorten the roster")
    return lines


def print_quota_table(reporter: ConsoleReporter, report) -> None:
    from rich.table import Table

    table = Table(title=f"service quotas in {report.region}", title_justify="left")
    for column in ("quota", "code", "scope", "limit", "in use", "per stack", "stacks that fit"):
        table.add_column(column, justify="right" if column in ("limit", "in use", "per stack", "stacks that fit")
                         else "left")
    for line in report.lines:
        limit = "?" if line.limit is None else f"{line.limit:g}"
        fits = "-" if line.fits is None else str(line.fits)
        used = f"{line.used:g}" + (f" +{line.owed:g} to come" if line.owed else "")
        style = "bold red" if line in report.limiting() else ""
        table.add_row(line.name, f"{line.service_code} {line.quota_code}", line.scope, limit, used,
                      f"{line.per_stack:g}", fits, style=style)
    reporter.console.print(table)


def build_stack(fleet: Fleet, row: FleetRow, overrides: dict, limiter: RateLimiter, no_wait: bool,
                lock: threading.Lock) -> None:
    """One student's `up` (and wait for health); every outcome ends up in the row."""
    from provisioner.commands.health import HealthWatch, wait_until_healthy
    from provisioner.commands.runner import Run, build_stack

    student = row.student
    opts = dataclasses.replace(fleet.opts, stack=student.stack, region=row.region)
    row.started = time.monotonic()
    try:
        run = Run(opts, RowReporter(row, lock),
                  {**overrides, "roster": fleet.roster.name, "student": student.owner},
                  connection=fleet.connection_for(row.region), base=fleet.base, limiter=limiter)
        with fleet._lock:
            fleet.contexts.append(run.ctx)

        @contextlib.contextmanager
        def start(engine):
            row.total, row.state = len(engine.steps), BUILDING
            yield

        # The fleet's preflight has counted every stack's vCPUs already.
        results = build_stack(run, check_quota=False, start=start)
        if any(r.outcome == INTERRUPTED for r in results):
            row.state = INTERRUPTED
            return
        failed = [r for r in results if r.outcome == FAILED]
        if failed:
            first = failed[0]
            row.state, row.error = FAILED, f"{first.name}: {first.error.message if first.error else first.detail}"
            row.hint = first.error.hint if first.error else None
            return
        row.url = (run.state.outputs or {}).get("url", "")
        if no_wait:
            row.state = UP
            return
        resources = run.ctx.resources
        watch = HealthWatch(run.ctx, resources["auto-scaling-group"].id,
                            {role: resources[f"{role}-target-group"].id for role in ("frontend", "backend")})
        row.state, row.step = WAITING, f"waiting for {run.config.desired_capacity} healthy instance(s)"
        wait_until_healthy(run.ctx, watch, desired=run.config.desired_capacity, grace_seconds=run.config.grace_seconds)
        row.state = HEALTHY
    except ProvisionError as e:
        row.state, row.error, row.hint = FAILED, e.message, e.hint
    except Interrupted:
        row.state = INTERRUPTED
    except Exception as e:  # a bug in one stack must not take the class down with it
        row.state, row.error = FAILED, f"unexpected error: {e!r}"
        row.details = traceback.format_exc()
    finally:
        row.seconds = time.monotonic() - row.started


def render_rows(title: str, rows: list[FleetRow], started: float, lock: threading.Lock):
    from rich.table import Table
    from rich.text import Text

    table = Table(title=f"{title}  ({fmt_seconds(time.monotonic() - started)})", title_justify="left")
    for column in ("student", "stack", "region", "state", "steps", "time", "step / URL / error"):
        table.add_column(column, no_wrap=column not in ("step / URL / error",), overflow="fold")
    with lock:
        for row in rows:
            took = row.seconds if row.seconds is not None else (
                time.monotonic() - row.started if row.started is not None else None)
            if row.state == FAILED:
                detail = Text(row.error, style="red")
            elif row.state in (HEALTHY, UP):
                detail = Text(row.url or "", style="green")
            else:
                detail = Text(row.health or row.step)
            table.add_row(row.student.label, row.student.stack, row.region,
                          Text(row.state, style=STYLES.get(row.state, "")),
                          f"{len(row.done)}/{row.total}" if row.total else "",
                          fmt_seconds(took) if took is not None else "", detail)
    return table


@guarded
def cmd_fleet_up(opts: GlobalOptions, reporter: ConsoleReporter, roster_path: str, roster_name: str | None,
                 overrides: dict, parallel: int, no_wait: bool) -> int:
    from rich.live import Live

    from provisioner.commands.cleanup import finished
    from provisioner.account.guard import check_account
    from provisioner.account.pricing import money
    from provisioner.commands.connection import confirm
    from provisioner.engine.state import check_state_dir

    check_state_dir(Path(opts.state_dir))   # once for the class, before any AWS call
    fleet = Fleet(opts, reporter, roster_path, roster_name)
    check_account(fleet.account, sandbox=opts.sandbox, action=f"build the fleet of roster {fleet.roster.name!r}")
    # One bad option is refused once, not once per student.
    shape = StackConfig().merged(overrides)
    shape.validate()
    wide_ssh = shape.check_ssh_exposure()
    if wide_ssh:
        reporter.warn(wide_ssh)
    found, errors = fleet.tagged()
    if region_errors(reporter, errors):
        raise ConfigError("could not read what the roster already has; nothing was created")
    with reporter.console.status("reading the service quotas"):
        lines = preflight(fleet, overrides, found)
    for line in lines:
        reporter.console.print(line)
    new = [s for s in fleet.roster.students if fleet.stack_of(s, found) is None]
    if new and not opts.sandbox and not opts.yes and sys.stdin.isatty():
        if not confirm(f"Create {len(new)} stack(s) of {fleet.where()}? Each bills by the hour "
                       "until `provision fleet down`"):
            raise ConfigError("cancelled; nothing was changed")

    limiter = fleet.limiter
    lock = threading.Lock()
    rows = [FleetRow(s, s.region or fleet.connection.region) for s in fleet.roster.students]
    started = time.monotonic()
    title = f"fleet up: {fleet.where()}"
    pool = cf.ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="fleet")
    futures = {pool.submit(build_stack, fleet, row, overrides, limiter, no_wait, lock): row for row in rows}
    live = Live(get_renderable=lambda: render_rows(title, rows, started, lock), console=reporter.console,
                refresh_per_second=4, transient=False) if reporter.console.is_terminal else None
    try:
        if live is not None:
            live.start()
        else:
            reporter.console.print(title)
        for future in finished(futures):
            future.result()
            if live is None:
                # Plain logs (CI, a pipe): one line per stack as it ends.
                done = futures[future]
                reporter.console.print(f"{done.student.stack}: {done.state}"
                                       + (f" {done.url}" if done.url and not done.error else "")
                                       + (f" ({done.error})" if done.error else ""), highlight=False)
    except KeyboardInterrupt:
        with fleet._lock:
            for ctx in fleet.contexts:
                ctx.cancel.set()
        for future in futures:
            future.cancel()
        pool.shutdown(wait=True)
        if live is not None:
            live.stop()
        done = sum(r.state in (HEALTHY, UP) for r in rows)
        reporter.error(f"interrupted with {done} of {len(rows)} stack(s) up; what each stack finished is saved in "
                       f"its state file", f"run the same `provision fleet up --roster {roster_path}` to finish "
                       f"them, or `provision fleet down --roster {roster_path}` to remove them")
        return EXIT_INTERRUPTED
    finally:
        if live is not None:
            live.stop()
    pool.shutdown(wait=True)

    ok = [r for r in rows if r.state in (HEALTHY, UP)]
    failed = [r for r in rows if r.state == FAILED]
    reporter.out.print(f"{len(ok)} of {len(rows)} stack(s) up"
                       + (f", {sum(r.state == HEALTHY for r in rows)} healthy" if not no_wait else "")
                       + (f"; {len(failed)} failed" if failed else "")
                       + f" in {fmt_seconds(time.monotonic() - started)}; "
                       f"{sum(r.changed for r in rows)} resource(s) created or changed; "
                       f"{limiter.calls} AWS requests, {limiter.throttles} throttled.")
    for r in failed:
        reporter.error(f"{r.student.stack} ({r.student.label}): {r.error}", r.hint)
        if r.details:
            reporter.console.print(r.details, style="dim", markup=False)
    if failed:
        reporter.out.print("Run the same `provision fleet up` again to finish them: the stacks that are up "
                           "are kept as they are.")
    sandbox = " --sandbox" if opts.sandbox else ""
    reporter.out.print(f"`provision fleet status|report|down --roster {roster_path}{sandbox}`: their health, "
                       "a report with their URLs for the instructor, and their deletion.", highlight=False)
    from provisioner.commands.cleanup import prices, stack_estimate
    from provisioner.account.expiry import now

    found, _ = fleet.tagged()
    at, book = now(), prices()
    hourly = sum(stack_estimate(s, book, at).hourly for s in
                 (fleet.stack_of(st, found) for st in fleet.roster.students) if s is not None)
    reporter.out.print(f"The fleet costs about {money(hourly)}/hour ({money(hourly * 24)}/day) while it is up.")
    if any(r.state == INTERRUPTED for r in rows):
        return EXIT_INTERRUPTED
    return EXIT_AWS if failed else EXIT_OK


# -- status and report ---------------------------------------------------------------------------

@dataclass
class StudentStatus:
    student: object
    region: str
    summary: object | None        # cleanup.StackSummary, None when nothing is in AWS
    url: str = ""
    healthy: int = 0
    desired: int | None = None
    hourly: float = 0.0
    spent: float = 0.0

    @property
    def health(self) -> str:
        if self.summary is None:
            return "absent"
        if self.desired is None:
            return "no group"
        return f"{self.healthy}/{self.desired} healthy"


def read_fleet(fleet: Fleet) -> tuple[list[StudentStatus], dict]:
    """Every student's stack as AWS has it: resources from the tags, health from the group and
    target groups, the URL from the load balancer, the cost from the price table."""
    from provisioner.commands.cleanup import prices, stack_estimate
    from provisioner.account.expiry import now
    from provisioner.commands.health import HEALTHY as HEALTHY_PHASE, HealthWatch
    from provisioner.engine.state import StateFile

    found, errors = fleet.tagged()
    at, book = now(), prices()
    rows = []
    for student in fleet.roster.students:
        region = student.region or fleet.connection.region
        rows.append(StudentStatus(student, region, fleet.stack_of(student, found)))

    def fill(row: StudentStatus) -> None:
        s = row.summary
        if s is None:
            return
        cost = stack_estimate(s, book, at)
        row.hourly, row.spent = cost.hourly, cost.spent
        by_step = {i.step: i for i in s.items}
        balancer = next((i for i in s.items if i.kind == "load_balancer"), None)
        if balancer is not None and balancer.detail.get("dns_name"):
            row.url = f"https://{balancer.detail['dns_name']}"
        else:
            try:
                saved = StateFile(fleet.opts.state_dir, s.stack).read()
            except ProvisionError:
                saved = None
            row.url = ((saved.outputs or {}).get("url", "") if saved else "") if balancer else ""
        group = by_step.get("auto-scaling-group")
        if group is None:
            return
        ctx = fleet.context(row.region, s.stack)
        ctx.read_only = True
        targets = {role: by_step[f"{role}-target-group"].id for role in ("frontend", "backend")
                   if f"{role}-target-group" in by_step}
        described, instances = HealthWatch(ctx, group.id, targets).read(read_console=False)
        if described is not None:
            row.desired = described["DesiredCapacity"]
            row.healthy = sum(i.phase(DEFAULT_GRACE_PERIOD) == HEALTHY_PHASE for i in instances)

    with cf.ThreadPoolExecutor(max_workers=8) as pool:
        for future in [pool.submit(fill, row) for row in rows]:
            try:
                future.result()
            except ProvisionError as e:
                fleet.reporter.warn(str(e.message))
    return rows, errors


def open_and_read(opts: GlobalOptions, reporter: ConsoleReporter, roster_path: str, roster_name: str | None):
    fleet = Fleet(opts, reporter, roster_path, roster_name)
    with reporter.console.status(f"reading {fleet.where()}"):
        rows, errors = read_fleet(fleet)
    return fleet, rows, errors


def region_errors(reporter: ConsoleReporter, errors: dict) -> int:
    """Regions that could not be read: said in words, exit 1 (what could be read is shown)."""
    for region, e in sorted(errors.items()):
        reporter.error(f"{region}: {e.message}", e.hint)
    return EXIT_AWS if errors else EXIT_OK


def format_time(value) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value else ""


def report_rows(rows: list[StudentStatus]) -> list[dict]:
    return [{"student": r.student.label, "email": r.student.email or "", "id": r.student.student_id or "",
             "stack": r.student.stack, "region": r.region, "url": r.url, "health": r.health,
             "created": format_time(r.summary.created) if r.summary else "",
             "cost_per_hour": round(r.hourly, 4), "cost_so_far": round(r.spent, 2)} for r in rows]


@guarded
def cmd_fleet_status(opts: GlobalOptions, reporter: ConsoleReporter, roster_path: str, roster_name: str | None,
                     as_json: bool) -> int:
    from rich.table import Table
    from rich.text import Text

    from provisioner.account.pricing import money

    fleet, rows, errors = open_and_read(opts, reporter, roster_path, roster_name)
    if as_json:
        print(json.dumps({"roster": fleet.roster.name, "account": fleet.account, "stacks": report_rows(rows),
                          "errors": {region: e.message for region, e in errors.items()}}, indent=2))
    else:
        table = Table(title=f"fleet: {fleet.where()}", title_justify="left")
        for column in ("student", "stack", "region", "resources", "health", "URL", "$/hour", "spent"):
            table.add_column(column, justify="right" if column in ("resources", "$/hour", "spent") else "left",
                             no_wrap=column != "URL", overflow="fold")
        for r in rows:
            healthy = r.desired is not None and r.desired > 0 and r.healthy >= r.desired
            table.add_row(r.student.label, r.student.stack, r.region, str(len(r.summary.items)) if r.summary else "0",
                          Text(r.health, style="green" if healthy else ("dim" if r.summary is None else "yellow")),
                          r.url, money(r.hourly), money(r.spent))
        reporter.out.print(table)
        present = [r for r in rows if r.summary is not None]
        healthy = [r for r in present if r.desired and r.healthy >= r.desired]
        reporter.out.print(f"{len(present)} of {len(rows)} stack(s) exist, {len(healthy)} fully healthy; "
                           f"about {money(sum(r.hourly for r in rows))}/hour together, "
                           f"{money(sum(r.spent for r in rows))} so far.")
    return region_errors(reporter, errors)


# A spreadsheet runs a cell that starts with one of these as a formula (OWASP's CSV injection:
# `=HYPERLINK(...)`, `+cmd|' /C calc'!A0`); a leading quote makes it text again.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# What Markdown reads as inline markup or a table's cell border (block markers such as `#` or
# `>` mean nothing inside a cell, and `(` or `!` only next to a `[`), and what an HTML renderer of
# Markdown reads as a tag or an entity.
MARKDOWN_SPECIALS = re.compile(r"([\\`*_\[\]|~])")
HTML_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"}


def csv_cell(value):
    """A value as a CSV cell that a spreadsheet shows and never evaluates. Numbers stay numbers."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def markdown_cell(value) -> str:
    """A value as the text of one Markdown table cell: on one line, without markup or HTML, so
    that a student's name can neither split the row nor add a link or a script to the page."""
    text = " ".join(str(value).split())
    text = MARKDOWN_SPECIALS.sub(r"\\\1", text)
    return "".join(HTML_ESCAPES.get(c, c) for c in text)


@guarded
def cmd_fleet_report(opts: GlobalOptions, reporter: ConsoleReporter, roster_path: str, roster_name: str | None,
                     fmt: str) -> int:
    import csv

    fleet, rows, errors = open_and_read(opts, reporter, roster_path, roster_name)
    records = report_rows(rows)
    columns = ["student", "email", "stack", "region", "url", "health", "created", "cost_so_far", "cost_per_hour"]
    if fmt == "csv":
        writer = csv.DictWriter(sys.stdout, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows({c: csv_cell(record[c]) for c in columns} for record in records)
    else:
        def cell(value, column) -> str:
            return f"${value:.2f}" if column.startswith("cost") else markdown_cell(value)

        print(f"# Fleet report: {markdown_cell(fleet.roster.name)}\n")
        print("| " + " | ".join(columns) + " |")
        print("|" + "|".join("---" for _ in columns) + "|")
        for record in records:
            print("| " + " | ".join(cell(record[c], c) for c in columns) + " |")
        total = sum(r.spent for r in rows)
        print(f"\n{sum(r.summary is not None for r in rows)} of {len(rows)} stack(s) exist; "
              f"about ${total:.2f} spent so far, ${sum(r.hourly for r in rows):.2f}/hour now.")
    return region_errors(reporter, errors)


# -- down ------------------------------------------------------------------------------------------

@guarded
def cmd_fleet_down(opts: GlobalOptions, reporter: ConsoleReporter, roster_path: str, roster_name: str | None,
                   parallel: int) -> int:
    from provisioner.commands.cleanup import Selection, cleanup

    fleet = Fleet(opts, reporter, roster_path, roster_name)
    selection = Selection(stacks=tuple(s.stack for s in fleet.roster.students), roster=fleet.roster.name)
    return cleanup(opts, reporter, selection, False, parallel, regions=fleet.regions)

