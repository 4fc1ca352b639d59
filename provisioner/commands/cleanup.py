"""Account-wide commands: `list`, `cleanup` and `reap`.

They work from the tags in AWS, never from local state: a stack made on another laptop, or whose
state file is gone, is found all the same. Deleting a stack reuses the engine's `down` (the steps'
own delete logic, in the reversed graph), one engine per stack; a local state file, when it
belongs to that stack, account and region, is used and removed like `down` does. Every cleanup
ends with a fresh scan that must find nothing left of the selected stacks.
"""

from __future__ import annotations

import concurrent.futures as cf
import sys
import threading
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from provisioner.shape.config import StackConfig
from provisioner.engine.context import Reporter, RunContext
from provisioner.engine.engine import DELETED, FAILED, INTERRUPTED, SKIPPED, Engine
from provisioner.engine.errors import (EXIT_AWS, EXIT_INTERRUPTED, EXIT_OK, AwsFailure, ConfigError, Interrupted, ProvisionError,
                     StateError)
from provisioner.account.expiry import NEVER, describe_expiry, expiry_phrase, humanize, now as utc_now_dt, parse_tag
from provisioner.commands.keys import KeyStore
from provisioner.engine.registry import plan_steps
from provisioner.commands.connection import Connection, GlobalOptions, confirm, guarded
from provisioner.engine.state import StackState, StateFile
from provisioner.ui.console import ConsoleReporter

EPHEMERAL_KINDS = ("instance", "volume")
# Scanning every region is one small burst of reads per region; a few at once keeps it quick
# without tripping the account's describe rate limits.
REGION_WORKERS = 8


@dataclass
class StackSummary:
    """One stack in one region, as its tagged resources describe it."""

    stack: str
    region: str
    items: list = field(default_factory=list)   # inventory.Found

    @property
    def created(self) -> datetime | None:
        times = [i.created for i in self.items if i.created is not None]
        return min(times) if times else None

    @property
    def owner(self) -> str | None:
        owners = Counter(i.owner for i in self.items if i.owner)
        return owners.most_common(1)[0][0] if owners else None

    @property
    def expiry_tag(self) -> str | None:
        """The stack's expiry as a tag value. Resources disagree only when an `up --ttl` was
        interrupted half-way: the latest (or `never`) is the user's last word, and the safe one."""
        from provisioner.engine.context import TAG_EXPIRES_AT

        # Instances and volumes come and go with the group, and a scale-out's may carry the
        # expiry of the template's day until the next `up`: the stack's own resources say it.
        lasting = [i for i in self.items if i.kind not in EPHEMERAL_KINDS] or self.items
        values = {i.tags.get(TAG_EXPIRES_AT) for i in lasting} - {None}
        if not values:
            return None
        if NEVER in values:
            return NEVER
        times = [(parse_tag(v), v) for v in values if parse_tag(v) is not None]
        return max(times)[1] if times else None

    @property
    def roster(self) -> str | None:
        """The class roster the stack was made from (`fleet up`), if any."""
        from provisioner.engine.context import TAG_ROSTER

        rosters = Counter(i.tags[TAG_ROSTER] for i in self.items if i.tags.get(TAG_ROSTER))
        return rosters.most_common(1)[0][0] if rosters else None

    def expired(self, at: datetime) -> bool:
        moment = parse_tag(self.expiry_tag)
        return moment is not None and moment <= at

    def age(self, at: datetime) -> timedelta | None:
        return at - self.created if self.created else None


def group_stacks(items) -> list[StackSummary]:
    stacks: dict[tuple[str, str], StackSummary] = {}
    for item in items:
        stacks.setdefault((item.region, item.stack), StackSummary(item.stack, item.region)).items.append(item)
    return sorted(stacks.values(), key=lambda s: (s.region, s.stack))


def short_owner(arn: str | None) -> str:
    """'user/alice' or 'assumed-role/Lab/alice' from an ARN: what a table has room for."""
    if not arn:
        return "-"
    return arn.split(":", 5)[-1] if arn.startswith("arn:") else arn


# -- scanning --------------------------------------------------------------------------------------

class Account:
    """The account and regions an account-wide command works on."""

    def __init__(self, opts: GlobalOptions, reporter: ConsoleReporter, all_regions: bool,
                 regions: list[str] | None = None):
        self.opts = opts
        self.reporter = reporter
        self.connection = Connection.open(opts)
        self.base = self.context(self.connection.region)
        self.account = self.connection.identify(self.base)
        self.regions = regions or (self._regions() if all_regions else [self.connection.region])
        self.contexts: list[RunContext] = []   # the engines' contexts, for Ctrl-C

    def context(self, region: str, stack: str = "provision", config: StackConfig | None = None,
                reporter: Reporter | None = None) -> RunContext:
        ctx = self.connection.context(stack, region, config or StackConfig(), reporter or Reporter())
        base = getattr(self, "base", None)
        if base is not None:
            # One session for every region and stack: botocore loads each service's model once
            # (per new session it is most of a client's cost, and --all-regions makes hundreds).
            ctx._session_factory = lambda: base.session
            ctx.account, ctx.owner = self.account, base.owner
        return ctx

    def where(self) -> str:
        target = "the sandbox" if self.opts.sandbox else f"account {self.account}"
        regions = self.regions[0] if len(self.regions) == 1 else f"{len(self.regions)} regions"
        return f"{target}, {regions}"

    def _regions(self) -> list[str]:
        from provisioner.account.inventory import regions

        return regions(self.base)

    def scan(self, forgotten: bool = False):
        """Every tagged resource (and, if asked, the untagged forgotten ones) in the regions,
        with the errors of regions that could not be read."""
        from provisioner.account.inventory import forgotten as find_forgotten, scan

        def one(region):
            ctx = self.context(region)
            ctx.read_only = True
            with scan_errors(region):
                found = scan(ctx)
                return found, (find_forgotten(ctx) if forgotten else [])

        items, lost, errors = [], [], {}
        with self.reporter.console.status(f"scanning {self.where()} for the tool's tags"):
            with cf.ThreadPoolExecutor(max_workers=min(REGION_WORKERS, len(self.regions))) as pool:
                futures = {pool.submit(one, region): region for region in self.regions}
                for future in cf.as_completed(futures):
                    try:
                        found, left = future.result()
                    except ProvisionError as e:
                        errors[futures[future]] = e
                        continue
                    items += found
                    lost += left
        return items, lost, errors

    def report_scan_errors(self, errors: dict) -> None:
        for region, error in sorted(errors.items()):
            self.reporter.error(f"{region}: {error.message}", error.hint)


@contextmanager
def scan_errors(region: str):
    """A region that cannot be read (throttled past the retries, unreachable) is an error of
    that region, said in words, never a traceback."""
    from botocore.exceptions import BotoCoreError, ClientError

    from provisioner.engine.retries import error_code, error_message, hint_for

    try:
        yield
    except ClientError as e:
        raise AwsFailure(f"cannot scan {region}: {e.operation_name} failed with {error_code(e)}: "
                         f"{error_message(e)}", hint=hint_for(error_code(e)), code=error_code(e)) from e
    except BotoCoreError as e:
        raise AwsFailure(f"cannot scan {region}: {e}",
                         hint="check the network and the endpoint (AWS_ENDPOINT_URL, --sandbox)") from e


def prices():
    from provisioner.account.pricing import load_prices

    return load_prices()


def stack_estimate(summary: StackSummary, book, at: datetime):
    from provisioner.account.pricing import estimate

    return estimate(summary.items, summary.region, book, now=at)


def warn_expired(reporter: ConsoleReporter, stacks: list[StackSummary], at: datetime) -> None:
    expired = [s for s in stacks if s.expired(at)]
    for s in expired:
        reporter.warn(f"stack {s.stack!r} in {s.region} {describe_expiry(s.expiry_tag, at)} and still bills; "
                      "`provision reap` deletes expired stacks")


# -- list ------------------------------------------------------------------------------------------

@guarded
def cmd_list(opts: GlobalOptions, reporter: ConsoleReporter, all_regions: bool, as_json: bool) -> int:
    import json

    account = Account(opts, reporter, all_regions)
    items, _, errors = account.scan()
    book, at = prices(), utc_now_dt()
    stacks = group_stacks(items)
    rows = []
    for s in stacks:
        cost = stack_estimate(s, book, at)
        rows.append((s, cost))
    if as_json:
        print(json.dumps({"account": account.account, "regions": account.regions, "stacks": [{
            "stack": s.stack, "region": s.region,
            "created_at": s.created.strftime("%Y-%m-%dT%H:%M:%SZ") if s.created else None,
            "age_seconds": int(s.age(at).total_seconds()) if s.created else None,
            "owner": s.owner, "roster": s.roster, "expires_at": s.expiry_tag, "expired": s.expired(at),
            "resources": len(s.items), "cost_per_hour": round(cost.hourly, 4), "spent": round(cost.spent, 2),
            "unpriced": cost.unpriced} for s, cost in rows],
            "errors": {region: e.message for region, e in errors.items()}}, indent=2))
    else:
        from rich.table import Table
        from rich.text import Text

        from provisioner.account.pricing import money

        table = Table(title=f"stacks in {account.where()}", title_justify="left")
        # Fleet stacks say which class they belong to; the column is there only when some do.
        rosters = any(s.roster for s, _ in rows)
        columns = ("stack", "region", "age", "owner", *(("roster",) if rosters else ()), "expires", "resources",
                   "$/hour", "spent")
        for column in columns:
            table.add_column(column, no_wrap=column in ("stack", "region", "age"),
                             justify="right" if column in ("resources", "$/hour", "spent") else "left")
        for s, cost in rows:
            expires = describe_expiry(s.expiry_tag, at)
            table.add_row(s.stack, s.region, humanize(s.age(at)) if s.created else "-", short_owner(s.owner),
                          *((s.roster or "-",) if rosters else ()),
                          Text(expires, style="bold red" if s.expired(at) else ""), str(len(s.items)),
                          money(cost.hourly) + ("+?" if cost.unpriced else ""), money(cost.spent))
        if rows:
            reporter.out.print(table)
        total = sum(cost.hourly for _, cost in rows)
        reporter.out.print(f"{len(rows)} stack(s), about {money(total)}/hour ({money(total * 24)}/day) together"
                           if rows else f"No stacks in {account.where()}.")
        for s, cost in rows:
            for why in cost.unpriced:
                reporter.warn(f"{s.stack} ({s.region}): {why}")
        warn_expired(reporter, stacks, at)
    account.report_scan_errors(errors)
    return EXIT_AWS if errors else EXIT_OK


# -- cleanup ---------------------------------------------------------------------------------------

@dataclass
class Selection:
    stacks: tuple[str, ...] = ()
    everything: bool = False
    older_than: timedelta | None = None
    expired: bool = False
    roster: str | None = None

    def validate(self) -> None:
        if not (self.stacks or self.everything or self.older_than or self.expired or self.roster):
            raise ConfigError("say which stacks to clean up",
                              hint="--stack NAME (repeatable), --roster NAME, --older-than 3h, --expired, or --all")
        if self.stacks and self.everything:
            raise ConfigError("give --stack or --all, not both")

    def matches(self, s: StackSummary, at: datetime) -> bool:
        if self.stacks and s.stack not in self.stacks:
            return False
        if self.roster and s.roster != self.roster:
            return False
        if self.older_than is not None and (s.created is None or s.age(at) < self.older_than):
            return False
        if self.expired and not s.expired(at):
            return False
        return True

    def describe(self) -> str:
        parts = []
        if self.roster:
            parts.append(f"of roster {self.roster}")
        elif self.stacks:
            parts.append("stack " + ", ".join(self.stacks))
        if self.older_than is not None:
            parts.append(f"older than {humanize(self.older_than)}")
        if self.expired:
            parts.append("past their expiry")
        return " and ".join(parts) or "every stack"


class StackProgress(Reporter):
    """Counts one stack's steps as its engine deletes them, for the multi-stack progress view."""

    def __init__(self, progress, task):
        self.progress, self.task = progress, task
        self.done: set[str] = set()
        self._lock = threading.Lock()

    def step(self, name, state, detail=""):
        with self._lock:
            if state in (DELETED, "absent", FAILED, SKIPPED, INTERRUPTED):
                self.done.add(name)
            current = f"{name}: {state}" + (f" ({detail})" if detail and state not in (DELETED, "absent") else "")
            if self.progress is not None:
                self.progress.update(self.task, completed=len(self.done), activity=current[:80])


@dataclass
class StackOutcome:
    summary: StackSummary
    results: list = field(default_factory=list)
    error: ProvisionError | None = None
    state_file: str | None = None       # the local state file used (and removed on success)

    @property
    def interrupted(self) -> bool:
        return any(r.outcome == INTERRUPTED for r in self.results)

    def why(self, step: str | None) -> str:
        """Why a resource of this stack is still there, from what its step's deletion said."""
        if self.error is not None:
            return self.error.message
        for r in self.results:
            if r.name == step and r.outcome in (FAILED, SKIPPED, INTERRUPTED):
                return r.detail or r.outcome
        failed = [r for r in self.results if r.outcome == FAILED]
        if failed:
            return f"not deleted: {failed[0].detail}"
        return "still present after the stack's deletion finished (found again by the final scan)"


def teardown_stack(account: Account, summary: StackSummary, reporter: Reporter) -> StackOutcome:
    """The engine's `down` for one stack found by tags, with its local state when that is the
    same stack in the same account and region."""
    opts = account.opts
    outcome = StackOutcome(summary)
    state_file = StateFile(opts.state_dir, summary.stack)
    try:
        with state_file.lock():
            try:
                state = state_file.load_for(account.account, summary.region)
            except StateError:
                # Another account's or region's stack of the same name, or a file that cannot be
                # read: the tags are enough, and that file is not ours to remove.
                state = None
            config = StackConfig.from_dict(state.config if state else {}).superset()
            config.zones = config.zones or []
            ctx = account.context(summary.region, summary.stack, config, reporter)
            account.contexts.append(ctx)   # so that Ctrl-C reaches this engine too
            if state is None:
                state = StackState(stack=summary.stack, account=account.account, region=summary.region)
                used_file = None
                if not state_file.exists():
                    # No other stack's state claims the local key of this name: the key pair's
                    # deletion removes it (and the known hosts) too.
                    ctx.keys = KeyStore(opts.state_dir, summary.stack)
            else:
                ctx.keys = KeyStore(opts.state_dir, summary.stack)
                used_file = state_file
                outcome.state_file = str(state_file.path)
            ctx.generation = state.generation
            steps, _ = plan_steps(config)
            outcome.results = Engine(ctx, steps, state, used_file).down()
    except ProvisionError as e:
        outcome.error = e
    return outcome


def print_dry_run(reporter: ConsoleReporter, selected: list[StackSummary], book, at: datetime) -> float:
    from rich.text import Text

    from provisioner.account.pricing import money

    total = 0.0
    for s in selected:
        cost = stack_estimate(s, book, at)
        total += cost.hourly
        age = humanize(s.age(at)) if s.created else "unknown age"
        reporter.out.print(Text.assemble(
            (s.stack, "bold"), f" ({s.region}; owner {short_owner(s.owner)}; {age} old; "
                               f"{expiry_phrase(s.expiry_tag, at)}): {len(s.items)} resource(s), "
                               f"{money(cost.hourly)}/hour stops"))
        by_kind: dict[str, list[str]] = {}
        for item in s.items:
            by_kind.setdefault(item.kind, []).append(item.id)
        for kind, ids in by_kind.items():
            reporter.out.print(f"  {kind:<20} {', '.join(ids)}", highlight=False, overflow="fold")
    return total


def print_forgotten(reporter: ConsoleReporter, lost, book) -> None:
    if not lost:
        return
    from provisioner.account.pricing import estimate, money

    reporter.out.print("\nUntagged, and often forgotten (not the tool's, so never deleted; check them by hand):")
    for item in lost:
        cost = estimate([item], item.region, book)
        reporter.out.print(f"  {item.region}  {item.kind:<14} {item.id}  {item.why}"
                           f"{f', about {money(cost.hourly)}/hour' if cost.hourly else ''}", highlight=False)


def run_teardowns(account: Account, selected: list[StackSummary], parallel: int, show: bool) -> list[StackOutcome]:
    """Delete the stacks, `parallel` at a time, with one progress bar per stack."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    total_steps = len(plan_steps(StackConfig().superset())[0])
    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), TextColumn("{task.fields[activity]}"),
                        console=account.reporter.console, transient=False, disable=not show)
    outcomes: list[StackOutcome] = []
    with progress:
        pool = cf.ThreadPoolExecutor(max_workers=max(1, parallel), thread_name_prefix="stack")
        futures = {}
        for s in selected:
            task = progress.add_task(f"{s.stack} ({s.region})", total=total_steps, activity="queued")
            futures[pool.submit(teardown_stack, account, s, StackProgress(progress, task))] = s
        try:
            for future in finished(futures):
                outcomes.append(future.result())
        except KeyboardInterrupt:
            # Every engine stops at its next AWS call or wait; what they deleted is deleted, and
            # the next cleanup finds the rest by their tags.
            for ctx in list(account.contexts):
                ctx.cancel.set()
            for future in futures:
                future.cancel()
            pool.shutdown(wait=True)   # the running engines end at their next call
            raise Interrupted() from None
        pool.shutdown(wait=True)
    return outcomes


def finished(futures):
    """The futures as they finish, waking every half second: a Ctrl-C the kernel hands to a
    worker thread is noticed by the main thread only when it wakes, and a blocking wait for
    stacks that take minutes would leave it unanswered until one of them ends."""
    pending = set(futures)
    while pending:
        done, pending = cf.wait(pending, timeout=0.5, return_when=cf.FIRST_COMPLETED)
        yield from done


def cleanup(opts: GlobalOptions, reporter: ConsoleReporter, selection: Selection, all_regions: bool,
            parallel: int, reap: bool = False, regions: list[str] | None = None) -> int:
    from provisioner.account.guard import check_account
    from provisioner.account.pricing import money

    selection.validate()
    account = Account(opts, reporter, all_regions, regions)
    check_account(account.account, sandbox=opts.sandbox, action="reap" if reap else "clean up")
    items, lost, errors = account.scan(forgotten=not reap)
    if errors:
        # Half a picture could mean deleting one stack's half: nothing is deleted.
        account.report_scan_errors(errors)
        raise ConfigError("could not read every region; nothing was deleted",
                          hint="fix the access above, or leave out --all-regions")
    book, at = prices(), utc_now_dt()
    selected = [s for s in group_stacks(items) if selection.matches(s, at)]
    if not reap:
        if selected:
            hourly = print_dry_run(reporter, selected, book, at)
            reporter.out.print(f"{sum(len(s.items) for s in selected)} resource(s) of {len(selected)} stack(s) "
                               f"({selection.describe()}) in {account.where()}; about {money(hourly)}/hour "
                               f"({money(hourly * 24)}/day) stops when they go.")
        else:
            reporter.out.print(f"No stacks {selection.describe()} in {account.where()}: nothing to delete.")
        print_forgotten(reporter, lost, book)
        if not selected:
            return EXIT_OK
        if not opts.yes:
            if not interactive():
                reporter.out.print("Dry run: nothing was deleted. Run again with --yes to delete them.")
                return EXIT_OK
            if selection.everything:
                typed = click_prompt(f"This deletes every stack in account {account.account}. "
                                     "Type the account id to go on")
                if typed.strip() != account.account:
                    raise ConfigError("the account id did not match; nothing was deleted")
            elif not confirm(f"Delete these {sum(len(s.items) for s in selected)} resource(s)?"):
                raise ConfigError("cancelled; nothing was deleted")
    elif not selected:
        print(f"no expired stacks in {account.where()}")
        return EXIT_OK

    started = time.monotonic()
    outcomes = run_teardowns(account, selected, parallel, show=not reap)
    return finish(account, reporter, selected, outcomes, time.monotonic() - started, book, reap)


def interactive() -> bool:
    return sys.stdin.isatty()


def click_prompt(text: str) -> str:
    import click

    return click.prompt(text, err=True, default="", show_default=False)


def finish(account: Account, reporter: ConsoleReporter, selected: list[StackSummary], outcomes: list[StackOutcome],
           seconds: float, book, reap: bool) -> int:
    """The fresh scan after the deletions: nothing may be left of the selected stacks."""
    from provisioner.account.pricing import estimate, money

    items, _, errors = account.scan()
    wanted = {(s.region, s.stack) for s in selected}
    left = [i for i in items if (i.region, i.stack) in wanted]
    by_stack = {(o.summary.region, o.summary.stack): o for o in outcomes}
    # reap's lines go to stdout as they are (a cron log); cleanup's through rich.
    say = print if reap else (lambda text: reporter.out.print(text, highlight=False, overflow="fold"))
    code = EXIT_OK
    for s in selected:
        outcome = by_stack.get((s.region, s.stack))
        remaining = [i for i in left if (i.region, i.stack) == (s.region, s.stack)]
        billing = estimate(remaining, s.region, book).hourly
        if not remaining:
            stopped = stack_estimate(s, book, utc_now_dt()).hourly
            say(f"{s.stack} ({s.region}): deleted, {len(s.items)} resource(s); {money(stopped)}/hour stopped")
            continue
        code = EXIT_AWS
        say(f"{s.stack} ({s.region}): {len(remaining)} resource(s) left, {money(billing)}/hour still billing")
        for item in remaining:
            say(f"  {item.kind} {item.id}: {outcome.why(item.step) if outcome else 'not attempted'}")
    if any(o.interrupted for o in outcomes):
        code = EXIT_INTERRUPTED
    if errors:
        account.report_scan_errors(errors)
        code = code or EXIT_AWS
    hourly_left = sum(estimate([i for i in left if i.region == region], region, book).hourly
                      for region in {i.region for i in left})
    say(f"{len(left)} resources left, {money(hourly_left)}/hour "
        f"(a fresh scan of {account.where()}, {seconds:.0f}s after the cleanup started)")
    if not reap:
        for o in outcomes:
            if o.error is not None:
                reporter.error(f"{o.summary.stack}: {o.error.message}", o.error.hint)
    return code


@guarded
def cmd_cleanup(opts: GlobalOptions, reporter: ConsoleReporter, selection: Selection, all_regions: bool,
                parallel: int) -> int:
    return cleanup(opts, reporter, selection, all_regions, parallel)


@guarded
def cmd_reap(opts: GlobalOptions, reporter: ConsoleReporter, all_regions: bool, parallel: int) -> int:
    # Cron-friendly: no prompt, no live display, one line per stack on stdout.
    opts.yes = True
    return cleanup(opts, reporter, Selection(expired=True), all_regions, parallel, reap=True)
