"""After `up` and `scale`: wait until the app answers, one row per instance.

An instance goes pending (launching) -> bootstrapping (running its user data: Docker, both image
builds; the load balancer's health checks fail or are still initial) -> healthy (healthy in both
target groups). Failing checks inside the grace period are the expected "502s until the targets turn
healthy" of a first boot; after it, the target is unhealthy and AWS's reason is shown. The console
output is read now and then for the bootstrap's failure marker, so a broken build is named long
before the deadline.
"""

from __future__ import annotations

import base64
import binascii
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

from botocore.exceptions import ClientError

from provisioner.engine.context import RunContext
from provisioner.engine.errors import AwsFailure
from provisioner.engine.retries import WAIT_AND_RETRY, error_code, error_message

PENDING, BOOTSTRAPPING, HEALTHY, UNHEALTHY, TERMINATING = (
    "pending", "bootstrapping", "healthy", "unhealthy", "terminating")
# Beyond the grace period: the launch itself (a minute or two) and the load balancer's checks
# after the app is up (healthy threshold x interval).
LAUNCH_MARGIN_SECONDS = 300
# Console output costs one call per instance; read it every this many seconds, not every poll.
CONSOLE_EVERY_SECONDS = 30
ROLES = ("frontend", "backend")


@dataclass
class InstanceHealth:
    instance_id: str
    zone: str
    lifecycle: str                       # the ASG's LifecycleState
    launched: datetime | None = None
    targets: dict = field(default_factory=dict)  # role -> (state, reason, description)
    bootstrap: str | None = None         # "ok", "failed step=<name>", or None (no marker yet)

    def phase(self, grace_seconds: float, now: datetime | None = None) -> str:
        if self.lifecycle.startswith("Pending"):
            return PENDING
        if self.lifecycle.startswith("Terminating") or self.lifecycle in ("Terminated", "Detaching", "Detached"):
            return TERMINATING
        states = [self.targets.get(role, ("unregistered", "", ""))[0] for role in ROLES]
        if all(s == "healthy" for s in states):
            return HEALTHY
        if self.bootstrap and self.bootstrap.startswith("failed"):
            return UNHEALTHY
        if "unhealthy" in states and self.launched is not None:
            age = ((now or datetime.now(timezone.utc)) - self.launched).total_seconds()
            if age > grace_seconds:
                return UNHEALTHY
        return BOOTSTRAPPING

    def detail(self) -> str:
        parts = [self.zone]
        for role in ROLES:
            state, reason, _ = self.targets.get(role, ("unregistered", "", ""))
            parts.append(f"{role} {state}" + (f" ({reason})" if reason else ""))
        if self.bootstrap:
            parts.append(f"bootstrap {self.bootstrap}")
        return ", ".join(parts)

    def why(self) -> str:
        """AWS's own words for each group that does not see it healthy."""
        reasons = []
        for role in ROLES:
            state, reason, description = self.targets.get(role, ("unregistered", "", ""))
            if state != "healthy":
                reasons.append(f"{role}: {state}" + (f", {reason}" if reason else "")
                               + (f": {description}" if description else ""))
        if self.bootstrap and self.bootstrap.startswith("failed"):
            reasons.append(f"user data: bootstrap {self.bootstrap}")
        return "; ".join(reasons)


def decode_console(output: str | None) -> str:
    """EC2 returns console output base64-encoded (the SDK leaves it so); emulators may not."""
    if not output:
        return ""
    try:
        return base64.b64decode(output, validate=True).decode("utf-8", "replace")
    except (binascii.Error, ValueError):
        return output


def bootstrap_marker(console: str) -> str | None:
    from userdata import FAILURE_MARKER, SUCCESS_MARKER

    for line in reversed(console.splitlines()):
        if SUCCESS_MARKER in line:
            return "ok"
        if FAILURE_MARKER in line:
            step = line.split(FAILURE_MARKER, 1)[1].strip()
            return f"failed {step}".strip()
    return None


def console_output(ctx: RunContext, instance_id: str) -> str:
    ec2 = ctx.ec2
    try:
        # The latest output needs a Nitro instance; older types only have the boot-time buffer.
        response = ec2.get_console_output(InstanceId=instance_id, Latest=True)
    except ClientError as e:
        if error_code(e) not in ("UnsupportedOperation", "InvalidParameterValue", "InvalidParameter"):
            raise
        response = ec2.get_console_output(InstanceId=instance_id)
    return decode_console(response.get("Output"))


class HealthWatch:
    """Reads the group and both target groups, and keeps the console markers it has seen."""

    def __init__(self, ctx: RunContext, group_name: str, target_groups: dict[str, str]):
        self.ctx = ctx
        self.group_name = group_name
        self.target_groups = target_groups  # role -> ARN
        self.markers: dict[str, str | None] = {}
        self._console_read: dict[str, float] = {}

    def failed_launch(self) -> str | None:
        """The group's latest failed scaling activity, in AWS's words (no capacity in a zone, an
        instance profile or image it cannot use): why instances are missing, not unhealthy."""
        activities = self.ctx.client("autoscaling").describe_scaling_activities(
            AutoScalingGroupName=self.group_name, MaxRecords=10)["Activities"]
        failed = next((a for a in activities if a.get("StatusCode") in ("Failed", "Cancelled")), None)
        if failed is None:
            return None
        return f"{failed.get('Description', 'a scaling activity')} failed: {failed.get('StatusMessage', '')}".strip()

    def group(self) -> dict | None:
        groups = self.ctx.client("autoscaling").describe_auto_scaling_groups(
            AutoScalingGroupNames=[self.group_name])["AutoScalingGroups"]
        return groups[0] if groups else None

    def read(self, read_console: bool = True) -> tuple[dict | None, list[InstanceHealth]]:
        group = self.group()
        if group is None:
            return None, []
        members = group.get("Instances", [])
        launched: dict[str, datetime] = {}
        if members:
            ids = [m["InstanceId"] for m in members]
            for reservation in self.ctx.ec2.describe_instances(InstanceIds=ids)["Reservations"]:
                for instance in reservation["Instances"]:
                    launched[instance["InstanceId"]] = instance.get("LaunchTime")
        health: dict[str, dict] = {}
        elbv2 = self.ctx.client("elbv2")
        for role, arn in self.target_groups.items():
            for d in elbv2.describe_target_health(TargetGroupArn=arn)["TargetHealthDescriptions"]:
                th = d.get("TargetHealth", {})
                health.setdefault(d["Target"]["Id"], {})[role] = (
                    th.get("State", "unknown"), th.get("Reason", ""), th.get("Description", ""))
        result = []
        now = time.monotonic()
        for m in members:
            item = InstanceHealth(m["InstanceId"], m.get("AvailabilityZone", ""), m.get("LifecycleState", ""),
                                  launched.get(m["InstanceId"]), health.get(m["InstanceId"], {}))
            healthy = all(item.targets.get(r, ("",))[0] == "healthy" for r in ROLES)
            if read_console and not healthy and item.lifecycle == "InService" and (
                    now - self._console_read.get(item.instance_id, -1e9) >= CONSOLE_EVERY_SECONDS):
                self._console_read[item.instance_id] = now
                self.markers[item.instance_id] = bootstrap_marker(console_output(self.ctx, item.instance_id))
            item.bootstrap = self.markers.get(item.instance_id)
            result.append(item)
        return group, result


def wait_until_healthy(ctx: RunContext, watch: HealthWatch, *, desired: int, grace_seconds: float) -> list[InstanceHealth]:
    """Poll until `desired` instances are healthy in both target groups (or, for 0, until the
    group has no instances left), showing each instance's phase; raise AwsFailure naming every
    target that is not healthy, and AWS's reason, at the deadline."""
    deadline_seconds = (grace_seconds + LAUNCH_MARGIN_SECONDS) * ctx.timeout_scale
    deadline = time.monotonic() + deadline_seconds
    shown: set[str] = set()
    while True:
        try:
            group, instances = watch.read()
        except ClientError as e:
            # EC2 is eventually consistent: an instance the group launched seconds ago can be
            # InvalidInstanceID.NotFound to DescribeInstances (and to GetConsoleOutput) for a
            # while. Read again at the next poll; anything else ends the wait, naming the call.
            if not WAIT_AND_RETRY["eventual-consistency"].matches(e) or time.monotonic() >= deadline:
                raise AwsFailure(f"{getattr(e, 'operation_name', 'an AWS call')} failed while waiting for the "
                                 f"instances to turn healthy: {error_code(e)}: {error_message(e)}",
                                 hint="the stack is built; `provision status` shows its health when AWS answers "
                                      "again", code=error_code(e)) from None
            ctx.sleep(ctx.poll_interval)
            continue
        if group is None:
            raise AwsFailure(f"Auto Scaling Group {watch.group_name} does not exist",
                             hint="run `provision up` to create it")
        live = [i for i in instances if i.phase(grace_seconds) != TERMINATING]
        for item in instances:
            ctx.reporter.step(item.instance_id, item.phase(grace_seconds), item.detail())
            shown.add(item.instance_id)
        for gone in shown - {i.instance_id for i in instances}:
            ctx.reporter.step(gone, "terminated", "")
        healthy = [i for i in live if i.phase(grace_seconds) == HEALTHY]
        if desired == 0 and not instances:
            return instances
        if desired > 0 and len(healthy) >= desired and len(live) == len(healthy):
            return instances
        if time.monotonic() >= deadline:
            not_healthy = [i for i in live if i.phase(grace_seconds) != HEALTHY]
            lines = "; ".join(f"{i.instance_id} ({i.zone}) {i.phase(grace_seconds)}: {i.why() or 'no reason given'}"
                              for i in not_healthy)
            if len(live) < desired:
                launch = watch.failed_launch()
                lines = "; ".join(filter(None, [lines, f"only {len(live)} of {desired} instances launched"
                                                + (f" ({launch})" if launch else "")]))
            raise AwsFailure(
                f"{len(healthy)} of {desired} instances healthy after {deadline_seconds:.0f}s; {lines}",
                hint="`provision logs INSTANCE` shows an instance's boot log; a first boot on a micro "
                     "instance can need a longer --grace-period (or --instance-type t3.small)")
        ctx.sleep(ctx.poll_interval)
