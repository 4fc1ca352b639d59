"""Where a command talks to and how it ends: the global options, the endpoint (sandbox or AWS)
and its region, and the wrapper that turns expected failures into a message and an exit code.
Every command module builds on this one; it imports none of them."""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass, field

from provisioner.shape.config import StackConfig
from provisioner.engine.context import RunContext
from provisioner.engine.errors import EXIT_INTERRUPTED, EXIT_OK, ConfigError, Interrupted, ProvisionError
from provisioner.account.preflight import caller_account, resolve_region
from provisioner.ui.console import ConsoleReporter

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
    # Whether --stack (or PROVISION_STACK) named the stack: a stack file's name counts otherwise.
    stack_given: bool = True
    # What the command line overrides of a stack file, for `plan` to say.
    shape_notes: list = field(default_factory=list)


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


@dataclass
class Connection:
    """Where a command talks to: the region, and the sandbox's endpoint and credentials (or
    None for the user's own AWS credentials)."""

    opts: GlobalOptions
    region: str
    endpoint: str | None = None
    credentials: dict | None = None

    @classmethod
    def open(cls, opts: GlobalOptions) -> "Connection":
        if not (math.isfinite(opts.timeout_scale) and opts.timeout_scale > 0):
            raise ConfigError("--timeout-scale must be a finite number greater than 0")
        region = resolve_region(opts.region, opts.profile, opts.sandbox)
        if not opts.sandbox:
            return cls(opts, region)
        from provisioner.sandbox import control as sandbox

        return cls(opts, region, sandbox.ensure_running(), dict(sandbox.CREDENTIALS))

    def context(self, stack: str, region: str, config: StackConfig, reporter) -> RunContext:
        return RunContext(stack=stack, region=region, config=config, profile=self.opts.profile,
                          endpoint_url=self.endpoint, credentials=self.credentials,
                          poll_interval=poll_interval(self.opts.sandbox), timeout_scale=self.opts.timeout_scale,
                          reporter=reporter)

    @staticmethod
    def identify(ctx: RunContext) -> str:
        """The account (and, on the context, the caller's ARN): the first call of every run."""
        return caller_account(ctx)


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
