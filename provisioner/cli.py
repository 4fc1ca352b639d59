"""The `provision` command. Kept light: boto3, rich and the engine are imported only when a
command runs, so `provision --help` answers at once."""

from __future__ import annotations

import functools

import click

from . import __version__
from .config import DEFAULT_STACK

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
        opts.stack = stack
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
        from .runner import GlobalOptions

        opts = GlobalOptions(stack="", region=region, profile=profile, state_dir=state_dir,
                             sandbox=sandbox, verbose=verbose, yes=yes, timeout_scale=timeout_scale)
        return f(opts, **kwargs)

    return wrapper


def shape_options(f):
    """Options that shape the stack; remembered in the state file, so a later `up` needs none."""

    @click.option("--vpc-cidr", help="VPC CIDR [10.0.0.0/16].")
    @click.option("--public-subnets", metavar="CIDR,CIDR", help="Public subnet CIDRs [10.0.1.0/24,10.0.2.0/24].")
    @click.option("--private-subnets", metavar="CIDR,CIDR", help="Private subnet CIDRs [10.0.11.0/24,10.0.12.0/24].")
    @click.option("--nat-per-az/--single-nat", default=None,
                  help="One NAT gateway per zone (resilient, twice the cost) or one shared [single].")
    @click.option("--instance-type", help="EC2 instance type of the app instances [t3.micro].")
    @click.option("--ami", help="AMI id [the latest Ubuntu 24.04 LTS, from AWS's public SSM parameter].")
    @click.option("--min", "min_size", type=int, help="Auto Scaling Group minimum [1].")
    @click.option("--desired", "desired_capacity", type=int, help="Instances to run [2].")
    @click.option("--max", "max_size", type=int, help="Auto Scaling Group maximum [4].")
    @click.option("--grace-period", type=int, metavar="SECONDS",
                  help="Health check grace period; must cover the first boot's build [600].")
    @click.option("--domain", help="Name on the self-signed certificate [<stack>.example.com].")
    @click.option("--certificate-arn", help="Use this ACM certificate (same region as the stack) "
                                            "instead of a self-signed one.")
    @click.option("--ttl", metavar="DURATION",
                  help="Expire the stack after this long (e.g. 4h, 90m, 2d; `never` to clear): "
                       "`provision reap` deletes expired stacks.")
    @click.option("--expires-at", metavar="TIME", help="Expire the stack at this time (ISO 8601, UTC if no zone).")
    @functools.wraps(f)
    def wrapper(*args, vpc_cidr, public_subnets, private_subnets, nat_per_az, instance_type, ami, min_size,
                desired_capacity, max_size, grace_period, domain, certificate_arn, ttl, expires_at, **kwargs):
        from .config import parse_cidr_pair
        from .expiry import expiry_from_options

        def overrides():
            return {"vpc_cidr": vpc_cidr,
                    "public_subnet_cidrs": parse_cidr_pair(public_subnets, "--public-subnets"),
                    "private_subnet_cidrs": parse_cidr_pair(private_subnets, "--private-subnets"),
                    "nat_per_az": nat_per_az, "instance_type": instance_type, "ami": ami,
                    "min_size": min_size, "desired_capacity": desired_capacity, "max_size": max_size,
                    "grace_period": grace_period, "domain": domain, "certificate_arn": certificate_arn,
                    "expires_at": expiry_from_options(ttl, expires_at)}

        return f(*args, overrides=overrides, **kwargs)

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="provision")
def main():
    """Build, run and tear down a production-shaped AWS web stack.

    \b
    provision up --sandbox      everything, against the built-in emulator
    provision plan              what `up` would do, changing nothing
    provision up                the real thing, with your usual AWS credentials
    provision status            a live view of every resource and instance
    provision scale 0           stop the app's instances, keep the stack
    provision logs              an instance's boot log
    provision outputs --json    ids for scripts
    provision down              remove everything the stack created
    provision list              every stack in the account, with its cost
    provision cleanup --expired delete forgotten stacks by their tags (dry run first)
    """


def _overrides_or_exit(opts, overrides):
    from .errors import ConfigError
    from .runner import ConsoleReporter

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
    from .runner import cmd_up

    cmd_up(opts, _overrides_or_exit(opts, overrides), no_wait=no_wait)


@main.command()
@common_options
@shape_options
def plan(opts, overrides):
    """Show what `up` would create, keep or change; changes nothing."""
    from .runner import cmd_plan

    cmd_plan(opts, _overrides_or_exit(opts, overrides))


@main.command()
@common_options
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status(opts, as_json):
    """Live view of every resource of the stack (read-only)."""
    from .runner import cmd_status

    cmd_status(opts, as_json)


@main.command()
@common_options
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def outputs(opts, as_json):
    """The stack's ids (and later its URL), from the state file (read-only)."""
    from .runner import cmd_outputs

    cmd_outputs(opts, as_json)


@main.command()
@common_options
def down(opts):
    """Delete every resource the stack created, found by state and by tags."""
    from .runner import cmd_down

    cmd_down(opts)


# Unknown options pass as arguments, so `scale -1` says what is wrong with -1.
@main.command(context_settings={"ignore_unknown_options": True})
@common_options
@click.argument("count", type=click.IntRange(min=0))
@click.option("--no-wait", is_flag=True, help="Do not wait for the instances to turn healthy (or to go).")
def scale(opts, count, no_wait):
    """Set how many app instances run (0 stops the compute, keeps the stack)."""
    from .runner import cmd_scale

    cmd_scale(opts, count, no_wait=no_wait)


@main.command()
@common_options
@click.argument("instance", required=False)
def logs(opts, instance):
    """An instance's console output: the boot script's progress and its OK or FAILED marker.

    Without INSTANCE: the first instance of the stack that is not healthy, else the first one.
    """
    from .runner import cmd_logs

    cmd_logs(opts, instance)


all_regions_option = click.option("--all-regions", is_flag=True,
                                  help="Every enabled region of the account, not only --region.")
parallel_option = click.option("--parallel", type=click.IntRange(1, 16), default=DEFAULT_PARALLEL_STACKS,
                               show_default=True, help="Stacks deleted at the same time.")


@main.command("list")
@account_options
@all_regions_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def list_stacks(opts, all_regions, as_json):
    """Every stack in the account, found by the tool's tags (not by local state): age, owner,
    expiry, resources, cost per hour and spent so far (read-only)."""
    from .cleanup import cmd_list

    cmd_list(opts, all_regions, as_json)


def _duration(ctx, param, value):
    if value is None:
        return None
    from .errors import ConfigError
    from .expiry import parse_duration

    try:
        return parse_duration(value, "--older-than")
    except ConfigError as e:
        raise click.BadParameter(e.message + (f" ({e.hint})" if e.hint else "")) from None


@main.command()
@account_options
@click.option("--stack", "stacks", multiple=True, metavar="NAME", help="This stack (repeatable).")
@click.option("--all", "everything", is_flag=True, help="Every stack of the tool in the account (asks for the "
                                                       "account id to be typed, unless --yes).")
@click.option("--older-than", metavar="DURATION", callback=_duration, help="Stacks created longer ago than this "
                                                                          "(e.g. 3h, 2d).")
@click.option("--expired", is_flag=True, help="Stacks past their expiry (see `up --ttl`).")
@all_regions_option
@parallel_option
def cleanup(opts, stacks, everything, older_than, expired, all_regions, parallel):
    """Delete stacks found by the tool's tags, in dependency order. A dry run unless --yes.

    Selectors combine (--older-than 3h --expired: both). Resources without the tool's tags are
    never touched; untagged things that often keep billing (unattached Elastic IPs and volumes,
    NAT gateways and load balancers in VPCs without instances) are reported. Ends with a fresh
    scan: exit 0 only when nothing of the selected stacks is left.
    """
    from .cleanup import Selection, cmd_cleanup
    from .config import validate_stack_name
    from .errors import ConfigError

    for name in stacks:
        try:
            validate_stack_name(name)
        except ConfigError as e:
            raise click.BadParameter(e.message, param_hint="--stack") from None
    cmd_cleanup(opts, Selection(stacks=tuple(dict.fromkeys(stacks)), everything=everything,
                                older_than=older_than, expired=expired), all_regions, parallel)


@main.command()
@account_options
@all_regions_option
@parallel_option
def reap(opts, all_regions, parallel):
    """Delete every stack past its expiry (`up --ttl`). For cron: no prompt, one line per stack,
    exit 1 if anything could not be removed."""
    from .cleanup import cmd_reap

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
    from .pricing_cli import cmd_prices

    cmd_prices(opts, refresh=refresh, as_json=as_json, instance_types=instance_types)


@main.group()
def sandbox():
    """The built-in AWS emulator (moto server on 127.0.0.1)."""


@sandbox.command("start")
def sandbox_start():
    """Start the emulator (commands with --sandbox start it on their own)."""
    from . import sandbox as sb

    click.echo(f"sandbox running at {sb.ensure_running()}")


@sandbox.command("status")
def sandbox_status():
    """Whether the emulator runs, and where."""
    from . import sandbox as sb

    info = sb.status()
    if info:
        click.echo(f"sandbox running at {info['endpoint']} (pid {info['pid']}, log {info['log']})")
    else:
        click.echo("sandbox not running (any command with --sandbox starts it)")


@sandbox.command("stop")
def sandbox_stop():
    """Stop the emulator; everything created in it is gone."""
    from . import sandbox as sb

    click.echo("sandbox stopped" if sb.stop() else "sandbox was not running")


if __name__ == "__main__":  # pragma: no cover
    main()
