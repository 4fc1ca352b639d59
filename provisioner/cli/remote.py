"""`provision exec` and `provision ssh`: commands on the app instances, through the stack's bastion.

The instances live in private subnets with no public address; the bastion (`up --bastion`) is
the one way in. Both are found in AWS by their tags (a running instance of this stack), never
from a remembered address: an Auto Scaling Group replaces instances, and their addresses with
them. Host keys are remembered under instance ids (see provisioner.commands.remote).
"""

from __future__ import annotations

import re
import sys
import threading

from provisioner.engine.errors import EXIT_AWS, EXIT_OK, ConfigError
from provisioner.commands.runner import INSTANCE_ID_RE, GlobalOptions, Run, guarded
from provisioner.ui.console import ConsoleReporter

# Ubuntu's images (the app instances' and the bastion's) let this user in with the key pair.
SSH_USER = "ubuntu"
SSH_PORT = 22
DEFAULT_CONNECT_TIMEOUT = 10.0
RUNNING = ("pending", "running")


def address_of(instance: dict, public: bool) -> tuple[str, int]:
    """Where to open SSH to an instance: the bastion's public address from here, an app
    instance's private one from the bastion."""
    return (instance.get("PublicIpAddress") if public else instance.get("PrivateIpAddress")), SSH_PORT


def stack_instances(run: Run, step: str) -> list[dict]:
    """The stack's running instances of one step ("bastion", or "instance" for the app's)."""
    from provisioner.engine.context import TAG_STACK, TAG_STEP

    filters = [{"Name": f"tag:{TAG_STACK}", "Values": [run.opts.stack]},
               {"Name": f"tag:{TAG_STEP}", "Values": [step]},
               {"Name": "instance-state-name", "Values": list(RUNNING)}]
    found = []
    for page in run.ctx.ec2.get_paginator("describe_instances").paginate(Filters=filters):
        for reservation in page["Reservations"]:
            found += reservation["Instances"]
    return sorted(found, key=lambda i: (i.get("Placement", {}).get("AvailabilityZone", ""), i["InstanceId"]))


def endpoints(run: Run, wanted: list[str], only_one: bool = False):
    """The bastion's endpoint and the targets' (all app instances, or the ones asked for)."""
    from provisioner.commands.remote import Endpoint

    sandbox = " --sandbox" if run.opts.sandbox else ""
    bastions = stack_instances(run, "bastion")
    if not bastions:
        raise ConfigError(f"stack {run.opts.stack!r} has no running bastion",
                          hint=f"`provision up{sandbox} --bastion --ssh-cidr YOUR.ADDRESS/32` adds one")
    host, port = address_of(bastions[0], public=True)
    if not host:
        raise ConfigError(f"the bastion {bastions[0]['InstanceId']} has no public address",
                          hint="`provision up --bastion` replaces it")
    bastion = Endpoint(bastions[0]["InstanceId"], host, port, SSH_USER)
    instances = stack_instances(run, "instance")
    if wanted:
        by_id = {i["InstanceId"]: i for i in instances}
        unknown = [i for i in wanted if i not in by_id]
        if unknown:
            raise ConfigError(f"no running instance {', '.join(unknown)} in stack {run.opts.stack!r}",
                              hint=f"`provision status{sandbox}` lists the stack's instances")
        instances = [by_id[i] for i in wanted]
    if not instances:
        raise ConfigError(f"stack {run.opts.stack!r} has no running app instances",
                          hint=f"`provision scale{sandbox} N` starts some")
    if only_one:
        instances = instances[:1]
    targets = []
    for instance in instances:
        host, port = address_of(instance, public=False)
        targets.append(Endpoint(instance["InstanceId"], host, port, SSH_USER))
    return bastion, targets


def open_run(opts: GlobalOptions, reporter: ConsoleReporter) -> Run:
    run = Run(opts, reporter)
    if run.is_new and not run.ctx.keys.exists():
        raise ConfigError(f"stack {opts.stack!r} has no state in {opts.state_dir}",
                          hint="run `provision up --bastion` first (or pass the --state-dir it used)")
    if not run.ctx.keys.exists():
        raise ConfigError(f"no SSH key for stack {opts.stack!r} at {run.ctx.keys.private_key_path}",
                          hint="`provision up --bastion --ssh-cidr YOUR.ADDRESS/32` makes one (a key pair is "
                               "replaced, with its instances, when its private key is lost)")
    run.ctx.keys.check_permissions()
    return run


def refuse_sandbox(run: Run, bastion) -> None:
    if run.opts.sandbox:
        raise ConfigError(f"the sandbox emulates AWS's APIs, not its machines: nothing answers SSH at the "
                          f"bastion's address {bastion.host}",
                          hint="on AWS the same command reaches the instances through the bastion")


def check_ids(instances) -> list[str]:
    for instance in instances:
        if not re.fullmatch(INSTANCE_ID_RE, instance):
            raise ConfigError(f"invalid instance id {instance!r}",
                              hint="an instance id looks like i-0123456789abcdef0; `provision status` lists them")
    return list(dict.fromkeys(instances))


@guarded
def cmd_exec(opts: GlobalOptions, reporter: ConsoleReporter, command: tuple[str, ...], instances: tuple[str, ...],
             connect_timeout: float, command_timeout: float | None, parallel: int) -> int:
    from provisioner.commands.remote import run_commands

    wanted = check_ids(instances)
    if not command:
        raise ConfigError("no command given", hint="e.g. `provision exec -- docker compose ps`")
    run = open_run(opts, reporter)
    bastion, targets = endpoints(run, wanted)
    refuse_sandbox(run, bastion)
    # As ssh does: the words are joined with spaces and the remote shell parses them, so
    # `-- 'tail -n 20 /var/log/syslog | grep docker'` and `-- docker compose ps` both work.
    text = " ".join(command)
    many = len(targets) > 1
    lock = threading.Lock()

    def show(result) -> None:
        with lock:
            where = f"{result.endpoint.name} ({result.endpoint.host})"
            if result.error is not None:
                reporter.error(f"{where}: {result.error}", result.hint)
                return
            if many:
                reporter.out.print(f"── {where}: exit {result.exit_status} in {result.seconds:.1f}s",
                                   style="bold" if result.exit_status == 0 else "bold red", highlight=False)
            sys.stdout.write(result.stdout)
            sys.stdout.flush()
            sys.stderr.write(result.stderr)
            sys.stderr.flush()

    results = run_commands(bastion, targets, text, run.ctx.keys.private_key_path, run.ctx.keys.known_hosts_path,
                           connect_timeout=connect_timeout, command_timeout=command_timeout, parallel=parallel,
                           on_result=show)
    failed = [r for r in results if r.error is not None]
    if many:
        ok = sum(r.exit_status == 0 for r in results)
        reporter.console.print(f"{ok} of {len(results)} instance(s) exited 0"
                               + (f"; {len(failed)} could not run it" if failed else ""))
    if failed:
        return EXIT_AWS
    if not many:
        # One instance: its exit status is ours, as with ssh.
        return results[0].exit_status or EXIT_OK
    return EXIT_OK if all(r.exit_status == 0 for r in results) else EXIT_AWS


@guarded
def cmd_ssh(opts: GlobalOptions, reporter: ConsoleReporter, instance: str | None, connect_timeout: float) -> int:
    from provisioner.commands.remote import interactive_shell

    wanted = check_ids([instance] if instance else [])
    run = open_run(opts, reporter)
    bastion, targets = endpoints(run, wanted, only_one=True)
    refuse_sandbox(run, bastion)
    if not instance:
        reporter.warn(f"opening a shell on {targets[0].name}; pass an instance id for another")
    status = interactive_shell(bastion, targets[0], run.ctx.keys.private_key_path, run.ctx.keys.known_hosts_path,
                               connect_timeout=connect_timeout)
    # -1: the connection ended without an exit status.
    return status if 0 <= status < 256 else EXIT_AWS
