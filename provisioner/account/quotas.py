"""Will the new stacks fit? The region's Service Quotas against what is in use and what each new
stack takes, read before anything is created.

A fleet of 30 stacks meets quotas one stack never does: five VPCs, five Elastic IPs and, on a new
account, as few as 5 vCPUs of standard instances per region. Without this check `fleet up` would
build a few stacks and fail the rest halfway (VpcLimitExceeded, or an Auto Scaling Group that
never launches); with it, the user learns before any change which quota to raise, and by how much.

Each quota is one declaration (Cloud Custodian style): its codes, how its usage is counted, and
what one new stack needs, by scope (the region, or a zone for per-zone quotas). Only reads.
"""

from __future__ import annotations

import dataclasses
import math
import re
import threading
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from botocore.exceptions import BotoCoreError, ClientError

from provisioner.shape.config import BASTION_INSTANCE_TYPE  # noqa: F401  (tests and older callers import it from here)
from provisioner.engine.errors import AwsFailure, ConfigError
from provisioner.account.inventory import all_pages
from provisioner.engine.kinds import Quota
from provisioner.engine.retries import CREDENTIAL_CODES, PERMISSION_CODES, error_code, error_message, hint_for

if TYPE_CHECKING:
    from provisioner.shape.config import StackConfig
    from provisioner.engine.context import RunContext


REGION_SCOPE = "region"

# "Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances": the family is the letters
# before the generation digit (m7i.large -> m, im4gn.large -> im, u-6tb1.metal -> u).
STANDARD_FAMILY_LETTERS = frozenset("acdhimrtz")
# Families starting with one of those letters that AWS counts under quotas of their own
# (Inf, DL, Trn, HPC; Mac runs on dedicated hosts only).
SEPARATE_QUOTA_FAMILIES = frozenset({"inf", "dl", "trn", "hpc", "mac"})
# Counted while they run or are about to; a stopped instance takes no vCPUs of the quota.
RUNNING_STATES = ("pending", "running")
# DescribeInstanceTypes takes at most 100 types a call; EC2 filters at most 200 values.
INSTANCE_TYPES_PER_CALL = 100
FILTER_VALUES_MAX = 200

NO_SUCH_QUOTA = "NoSuchResourceException"

# A type's vCPUs are the same in every region and account: read once per process.
_VCPUS: dict[str, int] = {}
_VCPUS_LOCK = threading.Lock()


def instance_family(instance_type: str) -> str:
    match = re.match(r"[a-z]+", instance_type or "")
    return match.group(0) if match else ""


def is_standard(instance_type: str) -> bool:
    family = instance_family(instance_type)
    return bool(family) and family[0] in STANDARD_FAMILY_LETTERS and family not in SEPARATE_QUOTA_FAMILIES


# -- what is read --------------------------------------------------------------------------------

class Reads:
    """What the quota declarations read through: the run's clients, the stacks' zones (asked
    for once), instance types' vCPUs (cached), and warnings about what could not be counted."""

    def __init__(self, ctx: "RunContext", config: "StackConfig"):
        self.ctx = ctx
        self.config = config
        self.warnings: list[str] = []
        self._zones: list[str] | None = None

    def pages(self, service: str, operation: str, items: str, *, passthrough=(), **params) -> list[dict]:
        """Every item of every page; errors as `_reading` says, except the codes in `passthrough`."""
        client = self.ctx.client(service)
        action = f"{client.meta.service_model.signing_name}:{client.meta.method_to_api_mapping[operation]}"
        with _reading(self.ctx, action, passthrough):
            return all_pages(self.ctx, service, operation, items, **params)

    @property
    def zones(self) -> list[str]:
        """The stacks' zones: the config's (the lead fills them in at preflight), else the
        region's first available ones, as preflight would choose them."""
        if self._zones is None:
            if self.config.zones:
                self._zones = list(self.config.zones)
            else:
                from provisioner.account.preflight import availability_zones

                self._zones = availability_zones(self.ctx)
        return self._zones

    def vcpus(self, instance_types) -> dict[str, int]:
        """DefaultVCpus of each type EC2 knows in this region (batched, cached)."""
        wanted = sorted({t for t in instance_types if t})
        with _VCPUS_LOCK:
            missing = [t for t in wanted if t not in _VCPUS]
        for start in range(0, len(missing), INSTANCE_TYPES_PER_CALL):
            batch = missing[start:start + INSTANCE_TYPES_PER_CALL]
            try:
                described = self.pages("ec2", "describe_instance_types", "InstanceTypes",
                                       passthrough=("InvalidInstanceType",), InstanceTypes=batch)
            except ClientError as e:
                if error_code(e) != "InvalidInstanceType":
                    raise
                # One unknown type fails the whole call: the rest one at a time.
                described = []
                for one in batch:
                    try:
                        described += self.pages("ec2", "describe_instance_types", "InstanceTypes",
                                                passthrough=("InvalidInstanceType",), InstanceTypes=[one])
                    except ClientError as e1:
                        if error_code(e1) != "InvalidInstanceType":
                            raise
            with _VCPUS_LOCK:
                _VCPUS.update({t["InstanceType"]: int(t["VCpuInfo"]["DefaultVCpus"])
                               for t in described if t.get("VCpuInfo", {}).get("DefaultVCpus") is not None})
        with _VCPUS_LOCK:
            return {t: _VCPUS[t] for t in wanted if t in _VCPUS}


@contextmanager
def _reading(ctx: "RunContext", action: str, passthrough=()):
    """A usage read refused for lack of permission stops the preflight (nothing has changed yet):
    a count the tool cannot see must never pass for zero."""
    try:
        yield
    except ClientError as e:
        code = error_code(e)
        if code in passthrough:
            raise
        if code in PERMISSION_CODES:
            raise ConfigError(f"cannot check quotas in {ctx.region}: {action} was refused "
                              f"({code}: {error_message(e)})", hint=hint_for(code), code=code) from None
        if code in CREDENTIAL_CODES:
            raise ConfigError(f"the AWS credentials were refused ({code}): {error_message(e)}",
                              hint=hint_for(code), code=code) from None
        raise AwsFailure(f"{action} failed with {code}: {error_message(e)}", hint=hint_for(code),
                         code=code) from None
    except BotoCoreError as e:
        raise AwsFailure(f"{action} failed: {e}",
                         hint="check the network, AWS_ENDPOINT_URL, or try --sandbox") from None


# -- usage and need: each quota is declared by the step that takes from it ---------------------------

def one_per_stack(reads: Reads) -> dict[str, float]:
    return {REGION_SCOPE: 1}


# -- what a stack that exists still needs ----------------------------------------------------------

def holdings(items) -> Counter:
    """What a stack found in the region holds: its resources by kind, and by step ("step:bastion")."""
    held = Counter(i.kind for i in items)
    held.update(f"step:{i.step}" for i in items if i.step)
    return held


def still_by_kind(kind: str, count: Callable[["StackConfig"], int]):
    """A quota on one kind of resource: a stack holding `count` of them needs no more; one that
    holds fewer (a stack stopped half-way) still needs the rest, from its first scope on (its NAT
    gateway in the first zone before the second)."""
    def still(reads: Reads, held: Counter, need: Callable[[], dict[str, float]]) -> dict[str, float]:
        have = held.get(kind, 0)
        if have >= count(reads.config):
            return {}
        out = {}
        for scope, amount in need().items():
            taken = min(have, amount)
            have -= taken
            if amount > taken:
                out[scope] = amount - taken
        return out
    return still


def registry_quotas() -> tuple[Quota, ...]:
    """Every quota a step of the registry takes from (each step module declares its own)."""
    from provisioner.engine.registry import quotas as declared

    return declared()


def __getattr__(name: str):
    if name == "QUOTAS":
        return registry_quotas()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def unfinished(reads: Reads, held: Counter) -> bool:
    """Whether a stack that exists still lacks something a quota counts (no call to AWS unless
    it lacks its instances: their vCPUs are looked up)."""
    return any(quota.still(reads, held, lambda quota=quota: quota.need(reads)) for quota in registry_quotas())


# -- the report ----------------------------------------------------------------------------------

def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


@dataclass
class QuotaLine:
    key: str
    name: str
    service_code: str
    quota_code: str
    limit: float | None        # None: unknown (not readable)
    used: float
    per_stack: float
    scope: str                 # "region", or the zone of a per-zone quota
    fits: int | None           # new stacks that fit; None if unknown or per_stack == 0
    unit: str = ""
    owed: float = 0.0          # still to be taken by stacks that exist half-built

    def needed_for(self, stacks: int) -> int:
        """The quota value `stacks` more stacks need (after the half-built ones are finished)."""
        return math.ceil(self.used + self.owed + self.per_stack * stacks)

    @property
    def over(self) -> bool:
        """Finishing the half-built stacks alone goes past the limit."""
        return self.limit is not None and self.owed > 0 and self.used + self.owed > self.limit


def _fits(limit: float | None, used: float, per_stack: float) -> int | None:
    if limit is None or per_stack <= 0:
        return None
    return max(0, math.floor((limit - used) / per_stack + 1e-9))


@dataclass
class QuotaReport:
    region: str
    wanted: int
    lines: list[QuotaLine] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    finishing: int = 0         # stacks that exist and still take something a quota counts
    # One stack's `up` (check_stack_instances), e.g. "stack 'lab'": the report speaks of what
    # it adds, not of a roster's new stacks.
    subject: str | None = None

    @property
    def fits(self) -> int:
        known = [line.fits for line in self.lines if line.fits is not None]
        return min(known) if known else self.wanted

    @property
    def ok(self) -> bool:
        return self.fits >= self.wanted and not any(line.over for line in self.lines)

    def limiting(self) -> list[QuotaLine]:
        return [line for line in self.lines if line.fits is not None and line.fits < self.wanted or line.over]

    def message(self) -> str:
        stacks = f"{self.wanted} new stack{'s' if self.wanted != 1 else ''}"
        if self.finishing:
            stacks += f" and the rest of {self.finishing} half-built one{'s' if self.finishing != 1 else ''}"
        if self.ok:
            checked = "the quotas it could read" if self.warnings else "its quotas"
            return f"The roster's {stacks} fit {checked} in {self.region} (room for {self.fits})."
        parts: list[str] = []
        groups: dict[tuple[str, str], list[QuotaLine]] = {}
        for line in self.limiting():
            groups.setdefault((line.service_code, line.quota_code), []).append(line)
        for (service_code, quota_code), lines in groups.items():
            facts = []
            for line in lines:
                where = f" in {line.scope}" if line.scope != REGION_SCOPE else ""
                unit = f" {line.unit}" if line.unit else ""
                owed = f" and {_number(line.owed)} still to come for half-built stacks" if line.owed else ""
                wants = (f"{_number(line.per_stack)} more for it -> needs {line.needed_for(self.wanted)}."
                         if self.subject else
                         f"{_number(line.per_stack)} per stack -> needs {line.needed_for(self.wanted)} "
                         f"for {self.wanted} more.")
                facts.append(f"{line.name} ({service_code} {quota_code}){where}: {_number(line.limit)}{unit}, "
                             f"{_number(line.used)} in use{owed}, {wants}")
            # A per-zone quota is one value for every zone: ask for what the fullest zone needs.
            desired = max(line.needed_for(self.wanted) for line in lines)
            parts.append(" ".join(facts) + f" `{increase_command(service_code, quota_code, desired, self.region)}`")
        head = (f"{self.subject} does not fit the service quotas in {self.region}. Raise:" if self.subject else
                f"The roster needs {stacks} in {self.region}; {self.fits} fit. Raise:")
        return f"{head} {parts[0]}" if len(parts) == 1 else "\n  ".join([head] + parts)


def increase_command(service_code: str, quota_code: str, desired: int, region: str) -> str:
    return (f"aws service-quotas request-service-quota-increase --service-code {service_code} "
            f"--quota-code {quota_code} --desired-value {desired} --region {region}")


# -- reading a quota -----------------------------------------------------------------------------

class _Refused(Exception):
    def __init__(self, warning: str):
        self.warning = warning


def quota_value(ctx: "RunContext", quota: Quota) -> tuple[float | None, str | None]:
    """(the quota's value, None), or (None, why it is unknown). The applied value, else AWS's
    default (an account that never raised a quota may have no applied value for it)."""
    client = ctx.client("service-quotas")
    label = f"{quota.name} ({quota.service_code} {quota.quota_code})"
    for operation in ("get_service_quota", "get_aws_default_service_quota"):
        try:
            answer = getattr(client, operation)(ServiceCode=quota.service_code, QuotaCode=quota.quota_code)
        except ClientError as e:
            code = error_code(e)
            if code == NO_SUCH_QUOTA:
                continue
            action = f"{client.meta.service_model.signing_name}:{e.operation_name}"
            if code in PERMISSION_CODES:
                raise _Refused(f"{action} was refused ({code}: {error_message(e)})") from None
            if code in CREDENTIAL_CODES:
                # Credentials refused before anything changed: a precondition (exit 2), as the
                # usage reads have it.
                raise ConfigError(f"cannot read the quota {label} in {ctx.region}: {action} failed with {code}: "
                                  f"{error_message(e)}", hint=hint_for(code), code=code) from None
            raise AwsFailure(f"cannot read the quota {label} in {ctx.region}: {action} failed with {code}: "
                             f"{error_message(e)}", hint=hint_for(code), code=code) from None
        except BotoCoreError as e:
            raise AwsFailure(f"cannot read the quota {label} in {ctx.region}: {e}",
                             hint="check the network, AWS_ENDPOINT_URL, or try --sandbox") from None
        value = (answer.get("Quota") or {}).get("Value")
        if value is not None:
            return float(value), None
    return None, f"Service Quotas has no value for {label} in {ctx.region}: not checked"


def check_quotas(ctx: "RunContext", config: "StackConfig", new_stacks: int, existing=(),
                 quotas: tuple[Quota, ...] | None = None) -> QuotaReport:
    """What `new_stacks` more stacks of `config` need in ctx.region against its quotas and
    current usage, once the stacks that exist (`existing`: their holdings) have what they still
    lack. Only reads. A quota that cannot be read (unknown to Service Quotas, or the credentials
    may not read quotas) is a warning, not counted; a usage read that fails stops the check (a
    count the tool cannot see must never pass for zero)."""
    quotas = registry_quotas() if quotas is None else quotas
    reads = Reads(ctx, config)
    report = QuotaReport(region=ctx.region, wanted=new_stacks)
    finishing: set[int] = set()
    refused: str | None = None
    unread: list[str] = []
    for quota in quotas:
        need = quota.need(reads)
        owed: Counter = Counter()
        for index, held in enumerate(existing):
            still = quota.still(reads, held, lambda: need)
            owed.update(still)
            if any(still.values()):
                finishing.add(index)
        if not need and not any(owed.values()):
            continue  # an option the stacks do not have (a database): nothing taken, nothing read
        limit = None
        if refused is None:
            try:
                limit, why = quota_value(ctx, quota)
            except _Refused as e:
                refused, why = e.warning, None
            if why:
                report.warnings.append(why)
        if limit is None and refused is not None:
            unread.append(f"{quota.name} ({quota.service_code} {quota.quota_code})")
        used = quota.usage(reads)
        for scope, per_stack in need.items():
            if per_stack <= 0 and scope != REGION_SCOPE and not owed.get(scope):
                continue
            in_use = float(used.get(scope, 0))
            report.lines.append(QuotaLine(
                key=quota.key, name=quota.name, service_code=quota.service_code, quota_code=quota.quota_code,
                limit=limit, used=in_use, per_stack=float(per_stack), scope=scope,
                fits=_fits(limit, in_use + owed.get(scope, 0), per_stack), unit=quota.unit,
                owed=float(owed.get(scope, 0))))
    if refused is not None:
        report.warnings.append(f"cannot read quotas in {ctx.region}: {refused}. Not checked: {', '.join(unread)} "
                               f"(grant servicequotas:GetServiceQuota and servicequotas:GetAWSDefaultServiceQuota "
                               f"to check them)")
    report.warnings.extend(reads.warnings)
    report.finishing = len(finishing)
    return report


def check_stack_instances(ctx: "RunContext", config: "StackConfig", app_instances: int, bastion: bool,
                          subject: str) -> QuotaReport:
    """One stack's `up` that adds instances (`app_instances` more of config.instance_type, and
    the bastion when `bastion`), against the Running On-Demand Standard vCPU quota and what runs
    in the region: the fleet's check, for one stack. That quota alone: AWS refuses the other
    kinds at their create call, where the run stops and says so, while the Auto Scaling Group
    launches instances minutes later and records the refusal as a scaling activity nobody reads.
    Only reads; a quota that cannot be read is a warning, as in the fleet."""
    adding = dataclasses.replace(config, desired_capacity=app_instances, bastion=bastion)
    report = check_quotas(ctx, adding, 1, quotas=tuple(q for q in registry_quotas() if q.key == "standard_vcpus"))
    report.subject = subject
    return report
