"""The `provision` command. Kept light: boto3, rich and the engine are imported only when a
command runs, so `provision --help` answers at once."""

from __future__ import annotations

import functools
import os

import click

from provisioner import __version__
from provisioner.shape.config import DEFAULT_STACK

# Stacks `cleanup` and `reap` delete at once: each is its own engine of 8 workers, and
# botocore's adaptive retry mode absorbs the throttling of several.
DEFAULT_PARALLEL_STACKS = 4


def common_options(f):
    """The global options, accepted by every command (the CLI contract)."""

    @click.option("--stack", envvar="PROVISION_STACK", default=DEFAULT_STACK, show_default=True,
                  help="Stack name (env PROVISION_STACK).")
    @account_options
    @functools.wraps(f)
    def wrapper(opts, stack, **kwargs):
        from click.core import ParameterSource

        opts.stack = stack
        # A stack file's name counts only when neither --stack nor PROVISION_STACK gave one.
        opts.stack_given = click.get_current_context().get_parameter_source("stack") != ParameterSource.DEFAULT
        return f(opts, **kwargs)

    return wrapper


def account_options(f):
    """The global options of commands that work on every stack of an account (list, cleanup,
    reap): the same, without --stack, which these take as a selector or not at all."""

    @click.option("--region", help="AWS region (else AWS_REGION, AWS_DEFAULT_REGION or the profile's).")
    @click.option("--profile", help="AWS profile from ~/.aws/config (SSO profiles too).")
    @click.option("--state-dir", envvar="PROVISION_STATE_DIR", default="./state", show_default=True,
                  type=click.Path(file_okay=False), help="Where state files live (env PROVISION_STATE_DIR).")
    @click.option("--sandbox", is_flag=True, help="Use the built-in AWS emulator; no account needed.")
    @click.option("-v", "--verbose", is_flag=True, help="Show every AWS call.")
    @click.option("--yes", "-y", is_flag=True, help="Answer yes to prompts (needed by `down` when not interactive).")
    @click.option("--timeout-scale", type=float, default=1.0, show_default=True,
                  help="Multiply every wait's deadline (e.g. 2 for a slow region).")
    @functools.wraps(f)
    def wrapper(region, profile, state_dir, sandbox, verbose, yes, timeout_scale, **kwargs):
        from provisioner.commands.connection import GlobalOptions

        opts = GlobalOptions(stack="", region=region, profile=profile, state_dir=state_dir,
                             sandbox=sandbox, verbose=verbose, yes=yes, timeout_scale=timeout_scale)
        return f(opts, **kwargs)

    return wrapper


def shape_options(f=None, *, stack_file: bool = True):
    """Options that shape the stack (provisioner/shape/options.py, each declared once); remembered in
    the state file, so a later `up` needs none. With `stack_file`, also `-f FILE`: a stack file
    whose values the flags override."""

    def decorate(f):
        @functools.wraps(f)
        def wrapper(*args, **kwargs):
            from provisioner.shape.options import OPTIONS

            values = {o.key: kwargs.pop(o.key) for o in OPTIONS}
            path = kwargs.pop("stack_file", None)
            opts = args[0] if args else None

            def overrides():
                from provisioner.shape.stackfile import apply

                return apply(opts, values, path)

            return f(*args, overrides=overrides, **kwargs)

        from provisioner.shape.options import click_options

        wrapped = click_options(wrapper)
        return file_option(wrapped, place_only=False) if stack_file else wrapped

    return decorate(f) if f is not None else decorate


def file_option(f, place_only: bool = True):
    """`-f FILE`: a stack file (`provision init`). For commands without shape options (`down`,
    `status`), only its stack name and region are used (and the whole file is checked)."""

    @click.option("-f", "--file", "stack_file", metavar="FILE", type=click.Path(dir_okay=False),
                  help="A stack file (`provision init` writes one); command-line options override it.")
    @functools.wraps(f)
    def wrapper(*args, stack_file=None, **kwargs):
        if not place_only:
            return f(*args, stack_file=stack_file, **kwargs)
        if stack_file:
            from provisioner.shape.stackfile import apply

            # The whole file is checked as `up` would check it; only its place is used.
            _overrides_or_exit(args[0], lambda: apply(args[0], {}, stack_file))
        return f(*args, **kwargs)

    return wrapper


class Provision(click.Group):
    """The command group, with a last net under the commands' own (`guarded`): whatever escapes
    a command is one line and a crash log, not a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except Exception as e:
            from provisioner.commands.connection import is_click_exit, report_crash
            from provisioner.ui.console import ConsoleReporter

            if is_click_exit(e):
                raise
            ctx.exit(report_crash(ConsoleReporter(), ctx.invoked_subcommand or "provision", e,
                                  os.environ.get("PROVISION_STATE_DIR", "./state"), None))


@click.group(cls=Provision, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="provision")
def main():
    """Build, run and tear down a production-shaped AWS web stack.

    \b
    provision up --sandbox      everything, against the built-in emulator
    provision init              a commented stack file (stack.toml) to edit; up -f stack.toml
    provision plan              what `up` would do, changing nothing
    provision up                the real thing, with your usual AWS credentials
    provision status            a live view of every resource and instance
    provision verify            the stack against AWS's security best practices
    provision scale 0           stop the app's instances, keep the stack
    provision logs              an instance's boot log
    provision outputs --json    ids for scripts
    provision down              remove everything the stack created
    provision list              every stack in the account, with its cost
    provision cleanup --expired delete forgotten stacks by their tags (dry run first)
    provision exec -- CMD       a command on every app instance, through the bastion
    provision fleet up          a stack per student of a class roster
    provision policy --json     the IAM policy the operator needs
    """


def _overrides_or_exit(opts, overrides):
    from provisioner.engine.errors import ConfigError
    from provisioner.commands.runner import ConsoleReporter

    try:
        return overrides()
    except ConfigError as e:
        ConsoleReporter().error(e.message, e.hint)
        raise SystemExit(e.exit_code) from None


@main.command()
@common_options
@shape_options
@click.option("--no-wait", is_flag=True, help="Do not wait for the instances to turn healthy.")
def up(opts, overrides, no_wait):
    """Create the stack, or bring an existing one in line (idempotent, resumable)."""
    from provisioner.commands.runner import cmd_up

    cmd_up(opts, _overrides_or_exit(opts, overrides), no_wait=no_wait)


@main.command()
@common_options
@shape_options
def plan(opts, overrides):
    """Show what `up` would create, keep or change; changes nothing."""
    from provisioner.commands.runner import cmd_plan

    cmd_plan(opts, _overrides_or_exit(opts, overrides))


@main.command()
@common_options
@shape_options
@click.option("--json", "as_json", is_flag=True, help="Print only the policy document (IAM JSON).")
@click.option("--account", metavar="ID", help="The account to scope it to [the credentials' account].")
def policy(opts, overrides, as_json, account):
    """The least-privilege IAM policy for this stack's shape (up, plan, status, down, list)."""
    from provisioner.account.policy import cmd_policy
    from provisioner.commands.connection import guarded

    guarded(cmd_policy)(opts, _overrides_or_exit(opts, overrides), as_json, account)


@main.command()
@click.option("--preset", default="stylesphere", show_default=True, metavar="NAME",
              help="The shape to start from (`--preset list` names them).")
@click.option("--force", is_flag=True, help="Replace FILE if it exists.")
@click.argument("file", default="stack.toml", required=False)
def init(preset, force, file):
    """Write a commented stack file (FILE, default stack.toml; - for standard output)."""
    from provisioner.engine.errors import ConfigError
    from provisioner.shape.stackfile import cmd_init
    from provisioner.ui.console import ConsoleReporter

    reporter = ConsoleReporter()
    try:
        code = cmd_init(reporter, preset, file, force)
    except ConfigError as e:
        reporter.error(e.message, e.hint)
        code = e.exit_code
    raise SystemExit(code)


@main.command()
@common_options
@file_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status(opts, as_json):
    """Live view of every resource of the stack (read-only)."""
    from provisioner.commands.runner import cmd_status

    cmd_status(opts, as_json)


@main.command()
@common_options
@file_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--no-probes", is_flag=True, help="Check the configuration only; no HTTP request to the stack.")
@click.option("--strict", is_flag=True, help="Count the controls the design breaks on purpose (accepted) as failures.")
def verify(opts, as_json, no_probes, strict):
    """The live stack against its design rules and AWS's Foundational Security Best Practices
    (read-only): one line per control; exit 1 when any fails."""
    from provisioner.commands.verify import cmd_verify

    cmd_verify(opts, as_json, no_probes, strict)


@main.command()
@common_options
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def outputs(opts, as_json):
    """The stack's ids (and later its URL), from the state file (read-only)."""
    from provisioner.commands.runner import cmd_outputs

    cmd_outputs(opts, as_json)


@main.command()
@common_options
@file_option
def down(opts):
    """Delete every resource the stack created, found by state and by tags."""
    from provisioner.commands.runner import cmd_down

    cmd_down(opts)


# Unknown options pass as arguments, so `scale -1` says what is wrong with -1.
@main.command(context_settings={"ignore_unknown_options": True})
@common_options
@click.argument("count", type=click.IntRange(min=0))
@click.option("--no-wait", is_flag=True, help="Do not wait for the instances to turn healthy (or to go).")
def scale(opts, count, no_wait):
    """Set how many app instances run (0 stops the compute, keeps the stack)."""
    from provisioner.commands.runner import cmd_scale

    cmd_scale(opts, count, no_wait=no_wait)


@main.command()
@common_options
@click.argument("instance", required=False)
@click.option("--app", "app", is_flag=True,
              help="The app's containers' logs from CloudWatch Logs (a stack built with --monitoring).")
@click.option("--since", default=None, metavar="WHEN",
              help="With --app: from this long ago (30s, 10m, 2h, 1d) or this ISO time (UTC if no zone) [10m].")
@click.option("--follow", "-f", is_flag=True, help="With --app: keep printing new lines until Ctrl-C.")
def logs(opts, instance, app, since, follow):
    """An instance's console output: the boot script's progress and its OK or FAILED marker.

    Without INSTANCE: the first instance of the stack that is not healthy, else the first one.
    With --app: both containers' lines of every instance, as `<time> <instance> <container> <message>`.
    """
    if app:
        from provisioner.commands.applogs import DEFAULT_SINCE
        from provisioner.commands.runner import cmd_app_logs

        if instance:
            raise click.UsageError("--app shows every instance's lines: give no INSTANCE")
        cmd_app_logs(opts, since or DEFAULT_SINCE, follow)
    if since is not None or follow:
        raise click.UsageError("--since and --follow go with --app")
    from provisioner.commands.runner import cmd_logs

    cmd_logs(opts, instance)


all_regions_option = click.option("--all-regions", is_flag=True,
                                  help="Every enabled region of the account, not only --region.")
parallel_option = click.option("--parallel", type=click.IntRange(1, 16), default=DEFAULT_PARALLEL_STACKS,
                               show_default=True, help="Stacks deleted at the same time.")


@main.command("exec", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@common_options
@click.option("--instance", "instances", multiple=True, metavar="ID", help="This instance (repeatable).")
@click.option("--all", "all_instances", is_flag=True, help="Every running app instance of the stack (the default).")
@click.option("--timeout", "command_timeout", type=click.FloatRange(min=0, min_open=True), metavar="SECONDS",
              help="Give up on the command after this long [wait for it].")
@click.option("--connect-timeout", type=click.FloatRange(min=0, min_open=True), default=10.0, show_default=True,
              metavar="SECONDS", help="Give up on an unreachable host after this long.")
@click.option("--parallel", type=click.IntRange(1, 64), default=8, show_default=True,
              help="Instances the command runs on at the same time.")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def exec_(opts, instances, all_instances, command_timeout, connect_timeout, parallel, command):
    """Run a command on the app instances through the bastion, in parallel; print each one's
    output and exit status (`up --bastion` first).

    \b
    provision exec -- docker compose ps
    provision exec --instance i-0123456789abcdef0 -- tail -n 50 /var/log/cloud-init-output.log
    """
    from provisioner.cli.remote import cmd_exec

    if all_instances and instances:
        raise click.UsageError("give --instance or --all, not both")
    cmd_exec(opts, command, instances, connect_timeout, command_timeout, parallel)


@main.command()
@common_options
@click.argument("instance", required=False)
@click.option("--connect-timeout", type=click.FloatRange(min=0, min_open=True), default=10.0, show_default=True,
              metavar="SECONDS", help="Give up on an unreachable host after this long.")
def ssh(opts, instance, connect_timeout):
    """An interactive shell on an app instance, through the bastion (`up --bastion` first).

    Without INSTANCE: the stack's first running instance.
    """
    from provisioner.cli.remote import cmd_ssh

    cmd_ssh(opts, instance, connect_timeout)


@main.command("list")
@account_options
@all_regions_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def list_stacks(opts, all_regions, as_json):
    """Every stack in the account, found by the tool's tags (not by local state): age, owner,
    expiry, resources, cost per hour and spent so far (read-only)."""
    from provisioner.commands.cleanup import cmd_list

    cmd_list(opts, all_regions, as_json)


def _duration(ctx, param, value):
    if value is None:
        return None
    from provisioner.engine.errors import ConfigError
    from provisioner.account.expiry import parse_duration

    try:
        return parse_duration(value, "--older-than")
    except ConfigError as e:
        raise click.BadParameter(e.message + (f" ({e.hint})" if e.hint else "")) from None


@main.command()
@account_options
@click.option("--stack", "stacks", multiple=True, metavar="NAME", help="This stack (repeatable).")
@click.option("--roster", metavar="NAME", help="The stacks of this class roster (`provision fleet up`).")
@click.option("--all", "everything", is_flag=True, help="Every stack of the tool in the account (asks for the "
                                                       "account id to be typed, unless --yes).")
@click.option("--older-than", metavar="DURATION", callback=_duration, help="Stacks created longer ago than this "
                                                                          "(e.g. 3h, 2d).")
@click.option("--expired", is_flag=True, help="Stacks past their expiry (see `up --ttl`).")
@all_regions_option
@parallel_option
def cleanup(opts, stacks, roster, everything, older_than, expired, all_regions, parallel):
    """Delete stacks found by the tool's tags, in dependency order. A dry run unless --yes.

    Selectors combine (--older-than 3h --expired: both). Resources without the tool's tags are
    never touched; untagged things that often keep billing (unattached Elastic IPs and volumes,
    NAT gateways and load balancers in VPCs without instances) are reported. Ends with a fresh
    scan: exit 0 only when nothing of the selected stacks is left.
    """
    from provisioner.commands.cleanup import Selection, cmd_cleanup
    from provisioner.shape.config import validate_stack_name
    from provisioner.engine.errors import ConfigError

    for name in stacks:
        try:
            validate_stack_name(name)
        except ConfigError as e:
            raise click.BadParameter(e.message, param_hint="--stack") from None
    cmd_cleanup(opts, Selection(stacks=tuple(dict.fromkeys(stacks)), everything=everything,
                                older_than=older_than, expired=expired, roster=roster), all_regions, parallel)


@main.command()
@account_options
@all_regions_option
@parallel_option
def reap(opts, all_regions, parallel):
    """Delete every stack past its expiry (`up --ttl`). For cron: no prompt, one line per stack,
    exit 1 if anything could not be removed."""
    from provisioner.commands.cleanup import cmd_reap

    cmd_reap(opts, all_regions, parallel)


@main.command()
@account_options
@click.option("--refresh", is_flag=True, help="Fetch the current prices from the AWS Price List API and keep "
                                             "them in ~/.config/provision/prices.json.")
@click.option("--instance-type", "instance_types", multiple=True, metavar="TYPE",
              help="Also price this instance type (repeatable; with --refresh).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def prices(opts, refresh, instance_types, as_json):
    """The hourly prices behind the cost estimates of `up`, `status`, `list` and `cleanup`, with
    their source and date (needs no AWS credentials unless --refresh)."""
    from provisioner.commands.prices import cmd_prices

    cmd_prices(opts, refresh=refresh, as_json=as_json, instance_types=instance_types)


@main.group()
def fleet():
    """Classroom labs: one stack per student of a roster (CSV).

    \b
    provision fleet up --roster class.csv       every student's stack, a few at a time
    provision fleet status --roster class.csv   health, URL and cost of each
    provision fleet report --roster class.csv   the same as CSV or Markdown, for the instructor
    provision fleet down --roster class.csv     every stack of the roster, then a final scan
    """


def roster_options(f):
    @click.option("--roster", "roster_path", required=True, type=click.Path(dir_okay=False), metavar="FILE",
                  help="The class roster: a CSV with a header and a name or id column (optional email, region).")
    @click.option("--roster-name", metavar="NAME", help="The roster's name in the tags and stack names "
                                                       "[from the file's name].")
    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        return f(*args, **kwargs)

    return wrapper


@fleet.command("up")
@account_options
@roster_options
@shape_options(stack_file=False)
@click.option("--parallel", type=click.IntRange(1, 32), default=6, show_default=True,
              help="Stacks built at the same time (one shared API rate limit for all).")
@click.option("--no-wait", is_flag=True, help="Do not wait for the instances to turn healthy.")
def fleet_up(opts, roster_path, roster_name, overrides, parallel, no_wait):
    """Build a stack for every student of the roster (idempotent: a re-run finishes what is
    missing). Checks the region's service quotas first: exit 2 if the class does not fit."""
    from provisioner.commands.fleet import cmd_fleet_up

    cmd_fleet_up(opts, roster_path, roster_name, _overrides_or_exit(opts, overrides), parallel, no_wait)


@fleet.command("status")
@account_options
@roster_options
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def fleet_status(opts, roster_path, roster_name, as_json):
    """Every student's stack: resources, health, URL and cost, from AWS (read-only)."""
    from provisioner.commands.fleet import cmd_fleet_status

    cmd_fleet_status(opts, roster_path, roster_name, as_json)


@fleet.command("report")
@account_options
@roster_options
@click.option("--format", "fmt", type=click.Choice(["csv", "md"]), default="md", show_default=True)
def fleet_report(opts, roster_path, roster_name, fmt):
    """Student, URL, health, created and cost so far, as CSV or Markdown on stdout (read-only)."""
    from provisioner.commands.fleet import cmd_fleet_report

    cmd_fleet_report(opts, roster_path, roster_name, fmt)


@fleet.command("down")
@account_options
@roster_options
@parallel_option
def fleet_down(opts, roster_path, roster_name, parallel):
    """Delete every stack of the roster (a dry run unless --yes or confirmed at a terminal),
    then scan: exit 0 only when nothing of them is left."""
    from provisioner.commands.fleet import cmd_fleet_down

    cmd_fleet_down(opts, roster_path, roster_name, parallel)


@main.group()
def sandbox():
    """The built-in AWS emulator (moto server on 127.0.0.1)."""


@sandbox.command("start")
def sandbox_start():
    """Start the emulator (commands with --sandbox start it on their own)."""
    from provisioner.sandbox import control as sb

    click.echo(f"sandbox running at {sb.ensure_running()}")


@sandbox.command("status")
def sandbox_status():
    """Whether the emulator runs, and where."""
    from provisioner.sandbox import control as sb

    info = sb.status()
    if info:
        click.echo(f"sandbox running at {info['endpoint']} (pid {info['pid']}, log {info['log']})")
    else:
        click.echo("sandbox not running (any command with --sandbox starts it)")


@sandbox.command("stop")
def sandbox_stop():
    """Stop the emulator; everything created in it is gone."""
    from provisioner.sandbox import control as sb

    click.echo("sandbox stopped" if sb.stop() else "sandbox was not running")


if __name__ == "__main__":  # pragma: no cover
    main()
