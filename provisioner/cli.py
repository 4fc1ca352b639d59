"""The `provision` command. Kept light: boto3, rich and the engine are imported only when a
command runs, so `provision --help` answers at once."""

from __future__ import annotations

import functools

import click

from . import __version__
from .config import DEFAULT_STACK


def common_options(f):
    """The global options, accepted by every command (the CLI contract)."""

    @click.option("--stack", envvar="PROVISION_STACK", default=DEFAULT_STACK, show_default=True,
                  help="Stack name (env PROVISION_STACK).")
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
    def wrapper(stack, region, profile, state_dir, sandbox, verbose, yes, timeout_scale, **kwargs):
        from .runner import GlobalOptions

        opts = GlobalOptions(stack=stack, region=region, profile=profile, state_dir=state_dir,
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
    @functools.wraps(f)
    def wrapper(*args, vpc_cidr, public_subnets, private_subnets, nat_per_az, instance_type, ami, min_size,
                desired_capacity, max_size, grace_period, domain, certificate_arn, **kwargs):
        from .config import parse_cidr_pair

        def overrides():
            return {"vpc_cidr": vpc_cidr,
                    "public_subnet_cidrs": parse_cidr_pair(public_subnets, "--public-subnets"),
                    "private_subnet_cidrs": parse_cidr_pair(private_subnets, "--private-subnets"),
                    "nat_per_az": nat_per_az, "instance_type": instance_type, "ami": ami,
                    "min_size": min_size, "desired_capacity": desired_capacity, "max_size": max_size,
                    "grace_period": grace_period, "domain": domain, "certificate_arn": certificate_arn}

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
