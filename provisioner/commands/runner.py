"""What every command does before and after the engine: validate the input, pick the endpoint
(sandbox or AWS), check credentials and account, load and lock the state, and turn results into
output and an exit code."""

from __future__ import annotations

import json
import sys
import time
from contextlib import contextmanager, nullcontext

from provisioner.shape.config import StackConfig, validate_stack_name
from provisioner.engine.context import RunContext
from provisioner.engine.engine import DELETED, FAILED, INTERRUPTED, Engine
from provisioner.engine.errors import (EXIT_AWS, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, ConfigError, Interrupted,
                     ProvisionError)
from provisioner.commands.keys import KeyStore
from provisioner.account.preflight import availability_zones, check_zones
from provisioner.engine.registry import plan_steps
from provisioner.engine.retries import CREDENTIAL_CODES, PERMISSION_CODES
from provisioner.commands.connection import Connection, GlobalOptions, confirm, guarded, poll_interval  # noqa: F401
from provisioner.engine.state import StackState, StateFile
from provisioner.ui.console import ConsoleReporter

class Run:
    """One command's run: the context, the state and the reporter."""

    def __init__(self, opts: GlobalOptions, reporter, overrides: dict | None = None, *,
                 connection: Connection | None = None, base: RunContext | None = None,
                 limiter=None, ask_ssh_cidr: bool = False):
        """`connection` and `base` (a context already identified) let a fleet's stacks share
        one endpoint, one session and one identity call; `limiter`, one rate limiter."""
        self.opts = opts
        self.reporter = reporter
        validate_stack_name(opts.stack)
        self.state_file = StateFile(opts.state_dir, opts.stack)
        # A directory that cannot hold the state, the lock or the key stops us here too, not as a
        # traceback at the first write, resources in.
        self.state_file.check_dir()
        saved = self.state_file.read()  # a corrupt file stops us before any AWS call
        built = StackConfig.from_dict(saved.config if saved else {})
        # The shape the stack was last built with (`plan` shows what changes since).
        self.built = built if saved is not None and saved.resources else None
        self.config = built.merged(overrides or {})
        if ask_ssh_cidr and self.config.bastion and not self.config.ssh_cidr and at_terminal():
            self.config.ssh_cidr = ask_for_ssh_cidr()
        self.config.validate()
        if saved is not None and saved.resources and built.replacements(self.config):
            raise ConfigError(
                f"stack {opts.stack!r} exists with other addresses or zones "
                f"({'; '.join(built.replacements(self.config))}); AWS cannot change a VPC's or subnet's CIDR, "
                "or move a subnet to another zone, in place",
                hint="leave the option out to keep the stack's addresses and zones, or `provision down` and then "
                     "`provision up` with the new ones")
        changes = built.encryption_changes(self.config) if saved is not None and saved.resources else []
        if changes:
            turn = "on" if self.config.audit else "off"
            raise ConfigError(
                f"stack {opts.stack!r} was built with{'out' if self.config.audit else ''} --audit; turning it {turn} "
                f"would change the KMS key of {', '.join(changes)}, which AWS fixes at creation",
                hint=f"keep --{'no-' if self.config.audit else ''}audit, or leave those tiers out, or `provision down` "
                     "and `provision up` again (their data goes with the old resources)")
        self.connection = connection or Connection.open(opts)
        region = self.connection.region
        self.ctx = self.connection.context(opts.stack, region, self.config, reporter)
        self.ctx.limiter = limiter
        self.ctx.keys = KeyStore(opts.state_dir, opts.stack)
        if base is not None:
            self.ctx._session_factory = lambda: base.session
            self.ctx.account, self.ctx.owner = base.account, base.owner
        else:
            self.ctx.account = self.connection.identify(self.ctx)
        self.state = self.state_file.load_for(self.ctx.account, region)
        self.is_new = self.state is None
        if self.state is None:
            self.state = StackState(stack=opts.stack, account=self.ctx.account, region=region)
        self.ctx.generation = self.state.generation

    def where(self) -> str:
        target = "the sandbox" if self.opts.sandbox else f"account {self.ctx.account}"
        return f"stack {self.opts.stack!r} in {target}, region {self.ctx.region}"

    def guard(self, action: str) -> None:
        """Refuse to change anything in an account the allow-list does not name (exit 2)."""
        from provisioner.account.guard import check_account

        check_account(self.ctx.account, sandbox=self.opts.sandbox, action=f"{action} stack {self.opts.stack!r}")

    def engine(self, config: StackConfig) -> Engine:
        steps, retired = plan_steps(config)
        return Engine(self.ctx, steps, self.state, self.state_file, retired=retired)

    def resolve_zones(self) -> None:
        if not self.config.zones:
            self.config.zones = availability_zones(self.ctx)
        elif self.is_new or self.config.zones != StackConfig.from_dict(self.state.config).zones:
            check_zones(self.ctx, self.config.zones)
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


def at_terminal() -> bool:
    return sys.stdin.isatty()


def ask_for_ssh_cidr() -> str:
    """At a terminal, `up --bastion` without --ssh-cidr asks rather than guess 0.0.0.0/0."""
    import click

    from provisioner.shape.config import normalize_ssh_cidr

    value = click.prompt("SSH to the bastion from which addresses? (a CIDR such as 203.0.113.7/32; "
                         "`curl https://checkip.amazonaws.com` shows yours)", err=True)
    return normalize_ssh_cidr(value)


def exit_code_for(results) -> int:
    if any(r.outcome == INTERRUPTED for r in results):
        return EXIT_INTERRUPTED
    failures = [r.error for r in results if r.outcome == FAILED and r.error is not None]
    if not failures:
        return EXIT_OK
    changed = any(r.changed for r in results)
    # Refused credentials or permissions before anything changed: a precondition, like bad input.
    if not changed and all(f.code in PERMISSION_CODES or f.code in CREDENTIAL_CODES
                           or f.exit_code == EXIT_USAGE for f in failures):
        return EXIT_USAGE
    return max(f.exit_code for f in failures)


def check_compute(run: Run) -> None:
    from provisioner.account.preflight import check_certificate, check_compute as check_types

    check_types(run.ctx)
    check_certificate(run.ctx)
    check_cdn_origin(run)
    if not run.config.build_on_instance:
        from provisioner.account.inventory import offered

        if not offered(run.ctx, "codebuild"):
            raise ConfigError(f"CodeBuild is not offered in {run.ctx.region}, so the images cannot be built there",
                              hint="use --build-on-instance (each instance builds them), or another --region")
        # The images are built for linux/amd64: an arm64 type is refused before anything is built.
        from steps.compute.launch_template import check_platform, instance_architecture

        check_platform(run.ctx, instance_architecture(run.ctx, run.config.instance_type))


def check_cdn_origin(run: Run) -> None:
    if run.config.cdn and not run.opts.sandbox:
        # CloudFront reaches the load balancer over HTTPS only (the secret header must not
        # travel in clear) and checks its certificate against the origin's name, the load
        # balancer's *.elb.amazonaws.com address: no certificate the stack can have matches it,
        # so every page would be a 502. The emulator does not check.
        raise ConfigError("--cdn needs a certificate on the load balancer that CloudFront trusts for the name it "
                          "connects to, and this version has none to give it (the self-signed one, or one of "
                          "yours for another name, is refused by CloudFront: 502 on every page)",
                          hint="use --cdn with --sandbox for now, or leave it out")


def check_build_options(run: Run) -> None:
    """What only a build must refuse (exit 2), while `down` and `status` still work on a stack
    saved with it: a value AWS would refuse as a tag a score of resources in, and a bastion open to
    more than a /16 without --allow-wide-ssh (warned about with it). `up`, `plan`, each stack
    of a fleet."""
    run.config.validate_tags()
    warning = run.config.check_ssh_exposure()
    if warning:
        run.reporter.warn(warning)


def check_ssh_key(run: Run) -> None:
    """With --bastion, the stack's private key as the key pair step will find it, checked
    before anything is created (`up`, and each stack of a fleet)."""
    if run.config.bastion:
        run.ctx.keys.check_usable()


def check_vcpu_quota(run: Run, built: StackConfig) -> None:
    """The instances this `up` adds (all of them for a new stack; for one that exists, the
    desired capacity's growth over `built`, what the stack was last built with, and a bastion
    it lacks) must fit the region's Running On-Demand Standard vCPU quota: the Auto Scaling
    Group would launch them minutes in and fail as a scaling activity nobody reads. A re-run
    that adds none reads nothing. The fleet checks every quota in its own preflight."""
    from provisioner.account.quotas import check_stack_instances

    config, held = run.config, run.state.resources
    app = (max(0, config.desired_capacity - built.desired_capacity) if "auto-scaling-group" in held
           else config.desired_capacity)
    bastion = config.bastion and "bastion" not in held
    if not app and not bastion:
        return
    run.ctx.read_only = True
    try:
        report = check_stack_instances(run.ctx, config, app, bastion, subject=f"stack {run.opts.stack!r}")
    finally:
        run.ctx.read_only = False
    for warning in report.warnings:
        run.reporter.warn(warning)
    if not report.ok:
        raise ConfigError(report.message(),
                          hint="nothing was created; ask AWS for the increase (the Service Quotas console, or "
                               "the command above), or ask for fewer instances (--desired)")


def wait_for_app(run: Run, reporter: ConsoleReporter, desired: int) -> int:
    """The live per-instance display until `desired` instances are healthy in both target groups."""
    from provisioner.commands.health import HealthWatch, wait_until_healthy

    resources = run.ctx.resources
    group = resources.get("auto-scaling-group")
    if group is None:
        return EXIT_OK
    watch = HealthWatch(run.ctx, group.id, {role: resources[f"{role}-target-group"].id
                                            for role in ("frontend", "backend")})
    what = "instances to go" if desired == 0 else f"{desired} instance(s) to turn healthy"
    reporter.reset()
    started = time.monotonic()
    reporter.console.print("Ctrl-C stops the waiting; the stack stays up.", style="dim")
    try:
        with reporter.live(f"waiting for {what}"):
            wait_until_healthy(run.ctx, watch, desired=desired, grace_seconds=run.config.grace_seconds)
    except (KeyboardInterrupt, Interrupted):
        reporter.warn("stopped waiting; nothing was undone. `provision status` shows the instances' health.")
        return EXIT_INTERRUPTED
    reporter.out.print(f"{'No instances run' if desired == 0 else f'{desired} instance(s) healthy'} "
                       f"after {time.monotonic() - started:.0f}s.")
    return EXIT_OK


def stack_cost(run: Run):
    """The stack's hourly cost and expiry, from a scan of the region's tagged resources (which
    also finds other stacks past their expiry), or None with a warning when it cannot be read."""
    from provisioner.commands.cleanup import group_stacks, prices, scan_errors, stack_estimate
    from provisioner.account.expiry import now
    from provisioner.account.inventory import scan

    try:
        run.ctx.read_only = True
        with scan_errors(run.ctx.region):
            stacks = group_stacks(scan(run.ctx))
    except ProvisionError as e:
        run.reporter.warn(f"no cost estimate: {e.message}")
        return None
    finally:
        run.ctx.read_only = False
    at = now()
    mine = next((s for s in stacks if s.stack == run.opts.stack), None)
    estimate = stack_estimate(mine, prices(), at) if mine is not None else None
    return mine, estimate, stacks, at


def report_cost(run: Run, reporter: ConsoleReporter, found=None) -> None:
    """'This stack costs about $X/hour ($Y/day) while it is up', its expiry, and a warning for
    every stack of the region past its expiry."""
    from provisioner.commands.cleanup import warn_expired
    from provisioner.account.expiry import describe_expiry
    from provisioner.account.pricing import cost_line, money

    found = found or stack_cost(run)
    if found is None:
        return
    mine, estimate, stacks, at = found
    if mine is not None:
        reporter.out.print(f"This stack costs about {cost_line(estimate)} while it is up "
                           f"(about {money(estimate.spent)} so far; `provision prices` shows the rates).")
        for why in estimate.unpriced:
            reporter.warn(why)
        expiry = describe_expiry(mine.expiry_tag, at)
        if mine.expiry_tag and not mine.expired(at):
            reporter.out.print(f"It expires {expiry}: `provision reap` deletes it after that "
                               "(`provision up --ttl` extends it).")
    warn_expired(reporter, stacks, at)


def print_url(run: Run, reporter: ConsoleReporter) -> None:
    outputs = run.state.outputs or {}
    if not outputs.get("url"):
        return
    reporter.out.print(f"\n  {outputs['url']}\n", highlight=False)
    certificate = run.state.resources.get("certificate", {}).get("attrs", {})
    # Behind the CDN, visitors see CloudFront's own (trusted) certificate.
    if certificate.get("self_signed") and not outputs.get("cdn_domain_name"):
        reporter.out.print(f"The certificate is self-signed for {certificate.get('domain')}: browsers warn "
                           "before the first visit (pass --certificate-arn to use your own).")
    if run.opts.sandbox:
        reporter.out.print("This is the sandbox: the stack is emulated, nothing answers at this address.")


def build_stack(run: Run, *, check_quota: bool = True, start=None) -> list:
    """The one `up` of a stack, for `provision up` and for each stack of `fleet up`: the checks
    that need the stack's own saved state, then the engine, all under the stack's lock.
    `start(engine)` is a context manager entered just before the engine runs (the CLI's
    confirmation and live display, the fleet's row); `check_quota` is off where a preflight has
    already counted the whole fleet's vCPUs."""
    check_build_options(run)   # this stack's own saved rule, too
    with run.lock():
        # What the stack was last built with, before resolve_zones records this run's config.
        built = StackConfig.from_dict(run.state.config)
        run.resolve_zones()
        check_compute(run)
        check_ssh_key(run)
        if check_quota:
            check_vcpu_quota(run, built)
        engine = run.engine(run.config)
        with start(engine) if start else nullcontext():
            return engine.up()


@guarded
def cmd_up(opts: GlobalOptions, reporter: ConsoleReporter, overrides: dict, no_wait: bool = False) -> int:
    run = Run(opts, reporter, overrides, ask_ssh_cidr=True)
    run.guard("build")
    started = time.monotonic()

    @contextmanager
    def start(engine):
        nonlocal started
        if run.is_new and not opts.sandbox and not opts.yes and sys.stdin.isatty():
            if not confirm(f"Create {run.where()}? It bills by the hour until `provision down`"):
                raise ConfigError("cancelled; nothing was changed")
        started = time.monotonic()
        with reporter.live(f"up: {run.where()}"):
            yield

    results = build_stack(run, start=start)
    reporter.summary(results, f"up: {run.where()}", time.monotonic() - started)
    reporter.changes(results)
    reporter.failures(results)
    code = exit_code_for(results)
    if code != EXIT_OK:
        return code
    sandbox = " --sandbox" if opts.sandbox else ""
    if not no_wait:
        # Outside the lock: waiting only reads, and `scale` or `down` may run meanwhile.
        code = wait_for_app(run, reporter, run.config.desired_capacity)
    print_url(run, reporter)
    reporter.out.print(f"Stack {opts.stack!r} is up. `provision status{sandbox}` shows its instances, "
                       f"`provision outputs` its ids; `provision down{sandbox}` removes it.")
    report_cost(run, reporter)
    return code


@guarded
def cmd_plan(opts: GlobalOptions, reporter: ConsoleReporter, overrides: dict) -> int:
    run = Run(opts, reporter, overrides, ask_ssh_cidr=True)
    check_build_options(run)
    run.resolve_zones()
    check_compute(run)
    with reporter.live(f"plan: {run.where()}"):
        results = run.engine(run.config).plan()
    reporter.summary(results, f"plan: {run.where()} (nothing was changed)", time.monotonic() - reporter.started)
    for note in opts.shape_notes:
        reporter.out.print(note, highlight=False)
    shape = shape_changes(run.built, run.config)
    if shape:
        reporter.out.print("Shape changes since the stack was last built:", highlight=False)
        for line in shape:
            reporter.out.print(f"  {line}", highlight=False)
    reporter.changes(results)
    reporter.failures(results)
    return exit_code_for(results)


def shape_changes(built: StackConfig | None, config: StackConfig) -> list[str]:
    """The options whose value differs from the shape the stack was built with, by key."""
    from provisioner.shape.options import OPTIONS

    if built is None:
        return []
    lines = []
    for option in OPTIONS:
        name = option.field or ("expires_at" if option.key == "expires_at" else None)
        if name is None:
            continue
        before, after = getattr(built, name), getattr(config, name)
        if before != after:
            lines.append(f"{option.key}: {before if before is not None else '(none)'} -> "
                         f"{after if after is not None else '(none)'}")
    return lines


def app_health(run: Run):
    """The group and its instances' health, when the stack has a group (status, logs)."""
    from provisioner.commands.health import HealthWatch

    resources = run.ctx.resources
    if "auto-scaling-group" not in resources:
        return None, []
    groups = {role: resources[f"{role}-target-group"].id for role in ("frontend", "backend")
              if f"{role}-target-group" in resources}
    return HealthWatch(run.ctx, resources["auto-scaling-group"].id, groups).read(read_console=False)


def instance_images(run: Run, group: dict | None) -> dict[str, tuple[str, str]]:
    """Per instance, the launch template version it was launched from and the image tag that
    version's boot script pulls ("built on the instance" for a build there): what the instance
    runs, read from the version, so the boot script has nothing to report."""
    from steps.compute.launch_template import image_tag_of_version

    template = run.ctx.resources.get("launch-template")
    if group is None or template is None:
        return {}
    versions = {i["InstanceId"]: str((i.get("LaunchTemplate") or {}).get("Version", ""))
                for i in group.get("Instances", [])}
    wanted = sorted({v for v in versions.values() if v.isdigit()}, key=int)
    tags: dict[str, str] = {}
    if wanted:
        for version in run.ctx.ec2.describe_launch_template_versions(
                LaunchTemplateId=template.id, Versions=wanted)["LaunchTemplateVersions"]:
            tag = image_tag_of_version(version.get("LaunchTemplateData") or {})
            tags[str(version["VersionNumber"])] = tag[:12] if tag else "built on the instance"
    return {i: (v, tags.get(v, "")) for i, v in versions.items()}


@guarded
def cmd_status(opts: GlobalOptions, reporter: ConsoleReporter, as_json: bool) -> int:
    run = Run(opts, reporter)
    # A stack we have no state for may have been built with any options: look for everything.
    config = run.config if not run.is_new else run.config.superset()
    results = run.engine(config).status()
    if run.is_new:
        results = [r for r in results if r.outcome != "missing"]
    group, instances = app_health(run)
    images = instance_images(run, group)
    found = stack_cost(run)
    grace = run.config.grace_seconds
    zones: dict[str, dict[str, int]] = {}
    for item in instances:
        counts = zones.setdefault(item.zone, {})
        counts[item.phase(grace)] = counts.get(item.phase(grace), 0) + 1
    if as_json:
        print(json.dumps({
            "stack": opts.stack, "region": run.ctx.region,
            "steps": [{"step": r.name, "state": r.outcome, "id": r.resource_id, "detail": r.detail}
                      for r in results],
            "instances": [{"id": i.instance_id, "zone": i.zone, "lifecycle": i.lifecycle,
                           "state": i.phase(grace),
                           "launch_template_version": images.get(i.instance_id, ("", ""))[0] or None,
                           "images": images.get(i.instance_id, ("", ""))[1] or None,
                           "targets": {role: {"state": t[0], "reason": t[1], "description": t[2]}
                                       for role, t in i.targets.items()}} for i in instances],
            "zones": zones,
            "capacity": ({"desired": group["DesiredCapacity"], "min": group["MinSize"], "max": group["MaxSize"]}
                         if group else None),
            **cost_json(found),
        }, indent=2))
    else:
        from rich.table import Table
        from rich.text import Text

        from provisioner.ui.console import STYLES

        table = Table(title=f"status: {run.where()}", title_justify="left")
        for column in ("step", "state", "resource", "detail"):
            table.add_column(column)
        for r in results:
            table.add_row(r.name, Text(r.outcome, style=STYLES.get(r.outcome, "")), r.resource_id or "",
                          r.detail)
        reporter.out.print(table)
        present = sum(r.outcome == "present" for r in results)
        reporter.out.print(f"{present} of {len(results)} resources present")
        if group is not None:
            table = Table(title=f"instances (desired {group['DesiredCapacity']}, min {group['MinSize']}, "
                                f"max {group['MaxSize']})", title_justify="left")
            for column in ("instance", "zone", "lifecycle", "state", "frontend :3000", "backend :5000", "images"):
                table.add_column(column, no_wrap=column in ("instance", "zone"))
            for i in instances:
                cells = []
                for role in ("frontend", "backend"):
                    state, reason, _ = i.targets.get(role, ("unregistered", "", ""))
                    cells.append(Text(state + (f" ({reason})" if reason else ""),
                                      style=STYLES.get(state, "")))
                version, tag = images.get(i.instance_id, ("", ""))
                table.add_row(i.instance_id, i.zone, i.lifecycle,
                              Text(i.phase(grace), style=STYLES.get(i.phase(grace), "")), *cells,
                              f"{tag} (template v{version})" if version else tag)
            reporter.out.print(table)
            per_zone = "; ".join(f"{zone}: " + ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
                                 for zone, counts in sorted(zones.items()))
            reporter.out.print(f"instances per zone: {per_zone or 'none'}")
        report_cost(run, reporter, found)
    reporter.failures(results)
    return exit_code_for(results)


def cost_json(found) -> dict:
    if found is None or found[0] is None:
        return {"cost": None, "expires_at": None, "expired": None}
    mine, estimate, _, at = found
    return {"cost": {"per_hour": round(estimate.hourly, 4), "per_day": round(estimate.daily, 2),
                     "spent": round(estimate.spent, 2), "unpriced": estimate.unpriced},
            "expires_at": mine.expiry_tag, "expired": mine.expired(at)}


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
        # Plain lines, never wrapped: `provision outputs | grep url` must see whole values.
        width = max(len(k) for k in state.outputs)
        for key, value in sorted(state.outputs.items()):
            print(f"{key:<{width}}  {value}")
    return EXIT_OK


@guarded
def cmd_down(opts: GlobalOptions, reporter: ConsoleReporter) -> int:
    run = Run(opts, reporter)
    run.guard("delete")
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
        if code != EXIT_INTERRUPTED:
            code = max(code, report_left(run, reporter))
    if code == EXIT_OK:
        # Also when the key pair was already gone (deleted by hand): its private key is of no use.
        run.ctx.keys.remove()
        deleted = sum(r.outcome == DELETED for r in results)
        reporter.out.print(f"Stack {opts.stack!r} is gone ({deleted} resources deleted)." if deleted
                           else f"Stack {opts.stack!r} had nothing left to delete.")
    return code


def report_left(run: Run, reporter: ConsoleReporter) -> int:
    """What a fresh scan of the region still finds with this stack's tag, as `cleanup` ends:
    `down` is done when AWS says so, not when every delete call returned."""
    from provisioner.commands.cleanup import prices, scan_errors
    from provisioner.account.inventory import scan
    from provisioner.account.pricing import estimate, money

    try:
        run.ctx.read_only = True
        with scan_errors(run.ctx.region):
            left = [f for f in scan(run.ctx) if f.stack == run.opts.stack]
    except ProvisionError as e:
        reporter.error(f"cannot check what is left of the stack: {e.message}", e.hint)
        return EXIT_AWS
    finally:
        run.ctx.read_only = False
    if not left:
        reporter.out.print("0 resources left (a fresh scan of the stack's tags).")
        return EXIT_OK
    hourly = estimate(left, run.ctx.region, prices()).hourly
    reporter.out.print(f"{len(left)} resource(s) left, {money(hourly)}/hour still billing "
                       f"(a fresh scan of the stack's tags):", highlight=False)
    for item in left:
        reporter.out.print(f"  {item.kind} {item.id}" + (f" (step {item.step})" if item.step else ""),
                           highlight=False, overflow="fold")
    reporter.error(f"`down` left {len(left)} resource(s) of stack {run.opts.stack!r}",
                   "run `provision down` again; if they stay, `provision cleanup --stack "
                   f"{run.opts.stack}` lists them with what is holding them")
    return EXIT_AWS


@guarded
def cmd_scale(opts: GlobalOptions, reporter: ConsoleReporter, count: int, no_wait: bool = False) -> int:
    run = Run(opts, reporter)
    if run.is_new:
        raise ConfigError(f"stack {opts.stack!r} has no state in {opts.state_dir}",
                          hint="run `provision up` first (or pass the --state-dir it used)")
    run.guard("scale")
    with run.lock():
        config = run.config
        notes = []
        # The group refuses a desired capacity outside min..max: move the bound, and say so.
        if count < config.min_size:
            notes.append(f"minimum {config.min_size} -> {count}")
            config.min_size = count
        if count > config.max_size:
            notes.append(f"maximum {config.max_size} -> {count}")
            config.max_size = count
        config.desired_capacity = count
        config.validate_compute()
        engine = run.engine(config)
        step = engine.steps["auto-scaling-group"]
        run.ctx.bind_step(step.name)
        group = step.find(run.ctx, run.state.resources.get(step.name, {}).get("id"))
        if group is None:
            raise ConfigError(f"stack {opts.stack!r} has no Auto Scaling Group", hint="run `provision up` first")
        run.ctx.resources[step.name] = group
        changes = step.update(run.ctx, group, apply=True)
        run.ctx.bind_step(None)
        # Remembered, so that the next `up` keeps this size instead of undoing it.
        run.state.config = config.to_dict()
        run.state_file.save(run.state)
    for change in changes:
        reporter.out.print(f"  auto-scaling-group: {change}")
    if notes:
        reporter.out.print(f"  (also {', '.join(notes)})")
    if not changes:
        reporter.out.print(f"Already at {count} instance(s).")
    if config.monitoring:
        # The scaling policies (steps/monitoring/scaling_policy.py) change the desired capacity on
        # their own afterwards: this count is where the group starts from, not where it stays.
        reporter.out.print(f"  Scaling on load is on: from {count}, the group adds an instance while CPU is above "
                           f"70% for 2 minutes and removes one below 30% for 5, within min {config.min_size} .. "
                           f"max {config.max_size}; `up` sets it back to {count}.")
    if no_wait:
        return EXIT_OK
    return wait_for_app(run, reporter, count)


INSTANCE_ID_RE = r"^i-(?:[0-9a-f]{8}|[0-9a-f]{17})$"


@guarded
def cmd_logs(opts: GlobalOptions, reporter: ConsoleReporter, instance: str | None) -> int:
    import re

    from provisioner.commands.health import BOOTSTRAPPING, HEALTHY, bootstrap_marker, console_output

    if instance is not None and not re.fullmatch(INSTANCE_ID_RE, instance):
        raise ConfigError(f"invalid instance id {instance!r}", hint="an instance id looks like i-0123456789abcdef0; "
                                                                   "`provision status` lists the stack's instances")
    run = Run(opts, reporter)
    run.engine(run.config)  # the stack's ids from state, for the group lookup
    group, instances = app_health(run)
    if instance is None:
        if not instances:
            raise ConfigError(f"stack {opts.stack!r} has no instances running",
                              hint="`provision status` shows the group; `provision scale N` starts some")
        grace = run.config.grace_seconds
        chosen = next((i for i in instances if i.phase(grace) not in (HEALTHY, BOOTSTRAPPING)), None) \
            or next((i for i in instances if i.phase(grace) != HEALTHY), None) or instances[0]
        instance = chosen.instance_id
        reporter.warn(f"showing {instance} ({chosen.zone}, {chosen.phase(grace)}); pass an instance id for another")
    from botocore.exceptions import ClientError

    try:
        text = console_output(run.ctx, instance)
    except ClientError as e:
        from provisioner.engine.retries import error_code, error_message

        if error_code(e) in ("InvalidInstanceID.NotFound", "InvalidInstanceID.Malformed"):
            raise ConfigError(f"no instance {instance} in {run.ctx.region}: {error_message(e)}",
                              hint="`provision status` lists the stack's instances") from None
        raise
    if not text:
        reporter.warn(f"{instance} has no console output yet; EC2 publishes it a few minutes after boot")
        return EXIT_OK
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    sys.stdout.flush()
    marker = bootstrap_marker(text)
    if marker == "ok":
        reporter.console.print(f"{instance}: the bootstrap finished (PROVISION-BOOTSTRAP-OK)")
    elif marker:
        reporter.console.print(f"{instance}: the bootstrap {marker}; the lines above say why")
    else:
        reporter.console.print(f"{instance}: no bootstrap marker yet (still booting, or the console lags by minutes)")
    return EXIT_OK


@guarded
def cmd_app_logs(opts: GlobalOptions, reporter: ConsoleReporter, since: str, follow: bool) -> int:
    """The app's containers' lines from CloudWatch Logs (--monitoring)."""
    from provisioner.commands.applogs import FOLLOW_DELAY, group_exists, parse_since, show_app_logs, stdout_line
    from steps.monitoring.app_log_group import app_log_group_name

    since_ms = parse_since(since)
    run = Run(opts, reporter)
    group = app_log_group_name(opts.stack)
    logs = run.ctx.client("logs")
    if not run.config.monitoring:
        raise ConfigError(f"stack {opts.stack!r} was built without --monitoring: its containers log on the "
                          "instances (json-file), not to CloudWatch Logs",
                          hint="`provision up --monitoring` sends both containers' logs to "
                               f"{group}; until then `provision exec -- docker compose logs` reads them")
    if not group_exists(logs, group):
        raise ConfigError(f"the app's log group {group} does not exist in {run.ctx.region}",
                          hint="`provision up --monitoring` makes it (and `provision status` says what the stack has)")
    # The run's poll interval (PROVISION_POLL_INTERVAL), at most FOLLOW_DELAY apart.
    return show_app_logs(logs, group, since_ms, follow=follow, write=stdout_line,
                         delay=min(FOLLOW_DELAY, run.ctx.poll_interval),
                         note=lambda text: reporter.console.print(text))
