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
from provisioner.engine.errors import EXIT_AWS, EXIT_INTERRUPTED, EXIT_OK, ConfigError, Interrupted, ProvisionError
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
    """Run a command body, turning expected failures into a message and an exit code; anything
    else (a dropped network, an answer botocore cannot parse, an AWS refusal outside a step, a
    bug) into one line and a crash log, never a traceback."""
    command = fn.__name__.removeprefix("cmd_").replace("_", " ")

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
        except Exception as e:
            if is_click_exit(e):
                raise
            code = report_crash(reporter, command, e, opts.state_dir, opts.stack)
        sys.exit(code or EXIT_OK)

    wrapper.__name__ = fn.__name__
    wrapper.__doc__ = fn.__doc__
    return wrapper


def is_click_exit(exc: BaseException) -> bool:
    import click

    return isinstance(exc, (click.exceptions.Abort, click.exceptions.ClickException, click.exceptions.Exit))


def what_failed(exc: BaseException) -> tuple[str, str | None]:
    """One line for an unexpected failure, in the user's terms, and a hint when there is one."""
    from botocore import exceptions as be
    from botocore.parsers import ResponseParserError

    from provisioner.engine.retries import error_code, error_message, hint_for

    if isinstance(exc, (be.ConnectionError, be.HTTPClientError)):
        return (f"the connection to AWS failed ({type(exc).__name__}): {exc}",
                "check the network (or a proxy, or the endpoint) and run the same command again")
    if isinstance(exc, be.ClientError):
        code = error_code(exc)
        operation = getattr(exc, "operation_name", None) or "an AWS call"
        return f"{operation} was refused: {code}: {error_message(exc)}", hint_for(code)
    if isinstance(exc, (ResponseParserError, be.IncompleteReadError)):
        return (f"AWS sent an answer that could not be read: {exc}",
                "this is usually a passing fault of the endpoint or a proxy: run the same command again")
    if isinstance(exc, be.BotoCoreError):
        return f"{type(exc).__name__}: {exc}", None
    return (f"unexpected error ({type(exc).__name__}: {exc})",
            "this is a bug in provision: please report it with the crash log")


def write_crash_log(exc: BaseException, command: str, state_dir: str | None, stack: str | None) -> str:
    """The full traceback, beside the state files (else in the temporary directory); its path."""
    import datetime
    import tempfile
    import traceback

    from provisioner import __version__

    body = (f"provision {__version__}, {command}, {datetime.datetime.now(datetime.timezone.utc).isoformat()}\n"
            f"argv: {' '.join(sys.argv)}\n\n"
            + "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
    name = f"{stack}.crash.log" if stack else "provision.crash.log"
    for directory in filter(None, (state_dir, tempfile.gettempdir())):
        try:
            os.makedirs(directory, exist_ok=True)
            path = os.path.join(directory, name)
            with open(path, "w", encoding="utf-8") as f:
                f.write(body)
            return os.path.abspath(path)
        except OSError:
            continue
    return "(could not be written)"


def report_crash(reporter: ConsoleReporter, command: str, exc: BaseException, state_dir: str | None,
                 stack: str | None) -> int:
    """Print what happened in one line, keep the traceback in a crash log; exit 1. Each step's
    result is in the state file as soon as it is known, so nothing finished is lost."""
    line, hint = what_failed(exc)
    log = write_crash_log(exc, command, state_dir, stack)
    reporter.error(f"{command} stopped: {line}", hint)
    reporter.console.print(f"The full traceback is in {log}. What finished is saved in the state file; "
                           "the next run carries on from there.", style="dim")
    return EXIT_AWS


def confirm(question: str) -> bool:
    import click

    return click.confirm(question, default=False, err=True)
