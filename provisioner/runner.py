"""What every command does before and after the engine: validate the input, pick the endpoint
(sandbox or AWS), check credentials and account, load and lock the state, and turn results into
output and an exit code."""

from __future__ import annotations

import json
import math
import os
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass

from .config import StackConfig, validate_stack_name
from .context import RunContext
from .engine import CREATED, DELETED, FAILED, INTERRUPTED, UPDATED, Engine
from .errors import (EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, ConfigError, Interrupted,
                     ProvisionError)
from .preflight import availability_zones, caller_account, resolve_region
from .registry import plan_steps
from .retries import CREDENTIAL_CODES, PERMISSION_CODES
from .state import StackState, StateFile
from .ui import ConsoleReporter

DEFAULT_POLL_INTERVAL = 5.0


@dataclass
class GlobalOptions:
    stack: str
    region: str | None
    profile: str | None
    state_dir: str
    sandbox: bool
    verbose: bool
    yes: bool
    timeout_scale: float


def poll_interval(sandbox: bool) -> float:
    raw = os.environ.get("PROVISION_POLL_INTERVAL")
    if raw is None:
        return 0.2 if sandbox else DEFAULT_POLL_INTERVAL
    try:
        value = float(raw)
    except ValueError:
        value = -1
    if not 0 < value <= 300:
        raise ConfigError(f"PROVISION_POLL_INTERVAL={raw!r} is not a number of seconds between 0 and 300")
    return value


class Run:
    """One command's run: the context, the state and the reporter."""

    def __init__(self, opts: GlobalOptions, reporter: ConsoleReporter, overrides: dict | None = None):
        self.opts = opts
        self.reporter = reporter
        validate_stack_name(opts.stack)
        if not (math.isfinite(opts.timeout_scale) and opts.timeout_scale > 0):
            raise ConfigError("--timeout-scale must be a finite number greater than 0")
        self.state_file = StateFile(opts.state_dir, opts.stack)
        saved = self.state_file.read()  # a corrupt file stops us before any AWS call
        built = StackConfig.from_dict(saved.config if saved else {})
        self.config = built.merged(overrides or {})
        self.config.validate()
        if saved is not None and saved.resources and built.replacements(self.config):
            raise ConfigError(
                f"stack {opts.stack!r} exists with other addresses ({'; '.join(built.replacements(self.config))}); "
                "AWS cannot change a VPC's or subnet's CIDR in place",
                hint="leave the option out to keep the stack's addresses, or `provision down` and then "
                     "`provision up` with the new ones")
        region = resolve_region(opts.region, opts.profile, opts.sandbox)
        endpoint, credentials = None, None
        if opts.sandbox:
            from . import sandbox

            endpoint, credentials = sandbox.ensure_running(), dict(sandbox.CREDENTIALS)
        self.ctx = RunContext(stack=opts.stack, region=region, config=self.config, profile=opts.profile,
                              endpoint_url=endpoint, credentials=credentials,
                              poll_interval=poll_interval(opts.sandbox), timeout_scale=opts.timeout_scale,
                              reporter=reporter)
        self.ctx.account = caller_account(self.ctx)
        self.state = self.state_file.load_for(self.ctx.account, region)
        self.is_new = self.state is None
        if self.state is None:
            self.state = StackState(stack=opts.stack, account=self.ctx.account, region=region)
        self.ctx.generation = self.state.generation

    def where(self) -> str:
        target = "the sandbox" if self.opts.sandbox else f"account {self.ctx.account}"
        return f"stack {self.opts.stack!r} in {target}, region {self.ctx.region}"

    def engine(self, config: StackConfig) -> Engine:
        steps, retired = plan_steps(config)
        return Engine(self.ctx, steps, self.state, self.state_file, retired=retired)

    def resolve_zones(self) -> None:
        if not self.config.zones:
            self.config.zones = availability_zones(self.ctx)
        self.state.config = self.config.to_dict()

    @contextmanager
    def lock(self):
        """Hold the stack's lock, with the state as the last run left it: another run may have
        saved it between our first read (before any AWS call) and the lock."""
        with self.state_file.lock(warn=self.reporter.warn):
            fresh = self.state_file.load_for(self.ctx.account, self.ctx.region)
            if fresh is not None:
                self.state, self.is_new = fresh, False
                self.ctx.generation = fresh.generation
            yield


def exit_code_for(results) -> int:
    if any(r.outcome == INTERRUPTED for r in results):
        return EXIT_INTERRUPTED
    failures = [r.error for r in results if r.outcome == FAILED and r.error is not None]
    if not failures:
        return EXIT_OK
    changed = any(r.outcome in (CREATED, UPDATED, DELETED) for r in results)
    # Refused credentials or permissions before anything changed: a precondition, like bad input.
    if not changed and all(f.code in PERMISSION_CODES or f.code in CREDENTIAL_CODES
                           or f.exit_code == EXIT_USAGE for f in failures):
        return EXIT_USAGE
    return max(f.exit_code for f in failures)


def guarded(fn):
    """Run a command body, turning expected failures into a message and an exit code."""

    def wrapper(opts: GlobalOptions, *args, **kwargs):
        reporter = ConsoleReporter(verbose=opts.verbose)
        try:
            code = fn(opts, reporter, *args, **kwargs)
        except ProvisionError as e:
            reporter.error(e.message, e.hint)
            code = e.exit_code
        except (Interrupted, KeyboardInterrupt):
            reporter.error("interrupted; what finished is saved in the state file, and the next run "
                           "(`up` or `down`) carries on from there")
            code = EXIT_INTERRUPTED
        sys.exit(code or EXIT_OK)

    return wrapper


def confirm(question: str) -> bool:
    import click

    return click.confirm(question, default=False, err=True)


@guarded
def cmd_up(opts: GlobalOptions, reporter: ConsoleReporter, overrides: dict) -> int:
    run = Run(opts, reporter, overrides)
    with run.lock():
        run.resolve_zones()
        engine = run.engine(run.config)
        if run.is_new and not opts.sandbox and not opts.yes and sys.stdin.isatty():
            if not confirm(f"Create {run.where()}? It bills by the hour until `provision down`"):
                raise ConfigError("cancelled; nothing was changed")
        started = time.monotonic()
        with reporter.live(f"up: {run.where()}"):
            results = engine.up()
        reporter.summary(results, f"up: {run.where()}", time.monotonic() - started)
        reporter.changes(results)
        reporter.failures(results)
    code = exit_code_for(results)
    if code == EXIT_OK:
        reporter.out.print(f"Stack {opts.stack!r} is up. `provision outputs` lists its ids; "
                           f"`provision down{' --sandbox' if opts.sandbox else ''}` removes it.")
    return code


@guarded
def cmd_plan(opts: GlobalOptions, reporter: ConsoleReporter, overrides: dict) -> int:
    run = Run(opts, reporter, overrides)
    run.resolve_zones()
    with reporter.live(f"plan: {run.where()}"):
        results = run.engine(run.config).plan()
    reporter.summary(results, f"plan: {run.where()} (nothing was changed)", time.monotonic() - reporter.started)
    reporter.changes(results)
    reporter.failures(results)
    return exit_code_for(results)


@guarded
def cmd_status(opts: GlobalOptions, reporter: ConsoleReporter, as_json: bool) -> int:
    run = Run(opts, reporter)
    # A stack we have no state for may have been built with any options: look for everything.
    config = run.config if not run.is_new else run.config.superset()
    results = run.engine(config).status()
    if run.is_new:
        results = [r for r in results if r.outcome != "missing"]
    if as_json:
        print(json.dumps([{"step": r.name, "state": r.outcome, "id": r.resource_id, "detail": r.detail}
                          for r in results], indent=2))
    else:
        from rich.table import Table
        from rich.text import Text

        from .ui import STYLES

        table = Table(title=f"status: {run.where()}", title_justify="left")
        for column in ("step", "state", "resource", "detail"):
            table.add_column(column)
        for r in results:
            table.add_row(r.name, Text(r.outcome, style=STYLES.get(r.outcome, "")), r.resource_id or "",
                          r.detail)
        reporter.out.print(table)
        present = sum(r.outcome == "present" for r in results)
        reporter.out.print(f"{present} of {len(results)} resources present")
    reporter.failures(results)
    return exit_code_for(results)


@guarded
def cmd_outputs(opts: GlobalOptions, reporter: ConsoleReporter, as_json: bool) -> int:
    validate_stack_name(opts.stack)
    state = StateFile(opts.state_dir, opts.stack).read()
    if state is None or not state.outputs:
        raise ConfigError(f"stack {opts.stack!r} has no outputs in {opts.state_dir}",
                          hint="run `provision up` first (or pass the --state-dir it used)")
    if as_json:
        print(json.dumps(state.outputs, indent=2, sort_keys=True))
    else:
        width = max(len(k) for k in state.outputs)
        for key, value in sorted(state.outputs.items()):
            reporter.out.print(f"{key:<{width}}  {value}", highlight=False)
    return EXIT_OK


@guarded
def cmd_down(opts: GlobalOptions, reporter: ConsoleReporter) -> int:
    run = Run(opts, reporter)
    if not opts.yes:
        if not sys.stdin.isatty():
            raise ConfigError("`down` deletes every resource of the stack; pass --yes to confirm "
                              "when not running interactively")
        if not confirm(f"Delete every resource of {run.where()}?"):
            raise ConfigError("cancelled; nothing was changed")
    with run.lock():
        # Look for every step any configuration could have made, so nothing is left billing.
        engine = run.engine(run.config.superset())
        known = set(run.state.resources)
        started = time.monotonic()
        with reporter.live(f"down: {run.where()}"):
            results = engine.down()
        reporter.summary([r for r in results if r.outcome != "absent" or r.name in known],
                         f"down: {run.where()}", time.monotonic() - started)
        reporter.failures(results)
    code = exit_code_for(results)
    if code == EXIT_OK:
        deleted = sum(r.outcome == DELETED for r in results)
        reporter.out.print(f"Stack {opts.stack!r} is gone ({deleted} resources deleted)." if deleted
                           else f"Stack {opts.stack!r} had nothing left to delete.")
    return code
