"""Everything about AWS errors, declared once: which codes mean "wait and try again" (and for how
long), which mean "already gone", which are about credentials or permissions, and a hint per code.

Two layers, as the best boto3 tools do it: botocore's own retry mode absorbs throttling and
transient HTTP errors on every call; the table below covers the codes that mean an order is valid
but early (eventual consistency) or late (a dependency still going away). Retries go by
``Error.Code``, never by message text, and never for AccessDenied or validation errors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

# Seconds, before --timeout-scale. One table so that every wait in the tool is tuned in one place.
TIMEOUTS: dict[str, float] = {
    "default": 300,
    # A resource created a moment ago can be invisible to the next call for a few seconds.
    "eventual-consistency": 120,
    # A deleted NAT gateway or load balancer keeps its network interfaces for minutes; the
    # subnet, security group and internet gateway refuse to go until they are released.
    "dependency": 1200,
    # A new IAM instance profile is refused by EC2 and Auto Scaling for about 10 seconds,
    # occasionally a minute or two.
    "instance-profile": 180,
    # A bucket's new Block Public Access setting reaches PutBucketPolicy within about a minute.
    "public-access-block": 60,
    "sandbox-start": 30,
    # A service-linked role made moments ago is refused as a key policy's principal until IAM has
    # propagated it (seconds).
    "kms-principal": 60,
    # A new CodeBuild service role is refused by CreateProject for seconds (IAM propagation).
    "build-role": 120,
    # A new flow log delivery role is refused by CreateFlowLogs for seconds (IAM propagation).
    "flow-log-role": 120,
}
# Each kind's own waits (a NAT gateway's 1-5 minutes to turn available) are its step's
# `create_timeout` and `delete_timeout`, in seconds, scaled the same way.

# The botocore retry mode for throttling: adaptive also rate-limits the client after a throttle,
# which keeps many concurrent steps (and many stacks at once) under the account's API limits.
BOTOCORE_RETRIES = {"mode": "adaptive", "total_max_attempts": 12}

# "X not found" for a thing we created or were given moments ago. During create/update these
# mean AWS has not finished propagating it; during delete they mean it is already gone. Each
# step declares its kind's codes (`not_found_codes`); these are the ones of no kind of ours.
BASE_NOT_FOUND_CODES = frozenset({
    # A network interface AWS made for a NAT gateway or load balancer, described as it goes.
    "InvalidNetworkInterfaceID.NotFound",
})
# Codes that, answered to a delete, mean there is nothing left to delete: every kind's
# not-found codes and `gone_codes`, and these parts of resources (a rule, a route, an object).
BASE_GONE_CODES = frozenset({
    "InvalidPermission.NotFound",
    "InvalidRoute.NotFound",
    "NoSuchKey",
})
# Answered to a delete while something still uses the resource; each step adds its kind's own
# (`in_use_codes`).
BASE_IN_USE_CODES = frozenset({"DependencyViolation", "ResourceInUse", "ResourceInUseException",
                               "InvalidIPAddress.InUse", "DeleteConflict", "ScalingActivityInProgress"})
_DERIVED: dict[tuple, tuple[frozenset, frozenset]] = {}


def _derived() -> tuple[frozenset, frozenset]:
    from provisioner.engine.registry import load_steps

    classes = load_steps()
    key = tuple(classes)
    if key not in _DERIVED:
        not_found = BASE_NOT_FOUND_CODES.union(*(cls.not_found_codes for cls in classes.values()))
        gone = not_found | BASE_GONE_CODES.union(*(cls.gone_codes for cls in classes.values()))
        _DERIVED[key] = (frozenset(not_found), frozenset(gone))
    return _DERIVED[key]


def not_found_codes() -> frozenset:
    """Every code meaning "not visible yet" (retried as eventual consistency after a create)."""
    return _derived()[0]


def in_use_codes() -> frozenset:
    """Every code meaning "still used by something that is going away" (retried on delete)."""
    from provisioner.engine.registry import load_steps

    return BASE_IN_USE_CODES.union(*(cls.in_use_codes for cls in load_steps().values()))


def gone_codes() -> frozenset:
    """Every code meaning "already gone" (to a delete, or to a read of something deleted)."""
    return _derived()[1]


def __getattr__(name: str):
    # The tables as they were, now read from the steps' declarations.
    if name == "NOT_FOUND_CODES":
        return not_found_codes()
    if name == "GONE_CODES":
        return gone_codes()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


PERMISSION_CODES = frozenset({
    "AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "AuthorizationError",
    "UnauthorizedAccess", "OptInRequired",
})

CREDENTIAL_CODES = frozenset({
    "ExpiredToken", "ExpiredTokenException", "RequestExpired", "InvalidClientTokenId",
    "UnrecognizedClientException", "AuthFailure", "InvalidAccessKeyId", "SignatureDoesNotMatch",
    "InvalidToken",
})

# What AWS answers when a caller goes faster than the account's API rate (botocore's retry
# modes treat the same codes as throttling). A fleet's shared rate limiter slows every stack
# down on any of them.
THROTTLE_CODES = frozenset({
    "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottledException",
    "TooManyRequestsException", "RequestLimitExceeded", "RequestThrottled", "SlowDown",
    "EC2ThrottledException", "BandwidthLimitExceeded", "PriorRequestNotComplete",
})
# ...and, for an answer without a body to carry a code, its HTTP status.
THROTTLE_STATUSES = frozenset({429, 503})


@dataclass(frozen=True)
class RetryCase:
    codes: frozenset[str] | Callable[[], frozenset[str]]   # or a function giving them
    timeout: str  # key into TIMEOUTS
    why: str
    # Only for the one condition AWS reports with a generic code (ValidationError): the part of
    # the message that tells it apart. Every other case goes by code alone.
    message: str | None = None

    def matches(self, exc: BaseException) -> bool:
        codes = self.codes() if callable(self.codes) else self.codes
        return error_code(exc) in codes and (self.message is None or self.message in error_message(exc))


# The one table of "wait and try again". Call sites name a case; the case says which codes and
# for how long. Deadlines come from TIMEOUTS (scaled by --timeout-scale).
WAIT_AND_RETRY: dict[str, RetryCase] = {
    "eventual-consistency": RetryCase(
        codes=not_found_codes, timeout="eventual-consistency",
        why="AWS has not yet propagated a resource created moments ago"),
    "dependency": RetryCase(
        codes=in_use_codes,
        timeout="dependency",
        why="something that uses it is still going away"),
    # Auto Scaling answers ValidationError and EC2 InvalidParameterValue, both generic codes,
    # while a new instance profile has not reached them yet; Terraform's AWS provider retries
    # the same message.
    "instance-profile": RetryCase(
        codes=frozenset({"ValidationError", "InvalidParameterValue"}), timeout="instance-profile",
        why="a new IAM instance profile takes seconds to reach EC2", message="Invalid IAM Instance Profile"),
    # AccessDenied is never retried, except here: PutPublicAccessBlock takes effect
    # asynchronously, so the bucket policy right after it can still be refused as public. The
    # caller retries only once it has read that the account itself allows public policies.
    "public-access-block": RetryCase(
        codes=frozenset({"AccessDenied"}), timeout="public-access-block",
        why="the bucket's new Block Public Access setting has not reached S3's policy check yet"),
    # CodeBuild answers its generic InvalidInputException while a service role made seconds ago
    # has not reached it ("CodeBuild is not authorized to perform: sts:AssumeRole on ..."); the
    # CDK and Terraform's provider retry the same message.
    "build-role": RetryCase(
        codes=frozenset({"InvalidInputException"}), timeout="build-role",
        why="a new IAM role takes seconds to reach CodeBuild", message="not authorized to perform: sts:AssumeRole"),
    # CreateKey refuses a key policy naming a principal IAM has not propagated yet (the Auto
    # Scaling service-linked role made just before) with its generic
    # MalformedPolicyDocumentException; only that message is retried, never a policy that is wrong.
    "kms-principal": RetryCase(
        codes=frozenset({"MalformedPolicyDocumentException"}), timeout="kms-principal",
        why="a new service-linked role takes seconds to reach KMS", message="invalid principals"),
    # CreateFlowLogs answers 200 with an Unsuccessful item, code InvalidParameter (generic),
    # "Unable to assume given IAM role: ...", while a delivery role made seconds ago has not
    # reached the flow logs service; Terraform's provider meets the same. The step raises the
    # item as a ClientError so that this case retries it.
    "flow-log-role": RetryCase(
        codes=frozenset({"InvalidParameter"}), timeout="flow-log-role",
        why="a new IAM role takes seconds to reach VPC flow logs", message="Unable to assume given IAM role"),
    # WAF answers WAFUnavailableEntityException for a load balancer it does not know yet (made
    # moments ago, or still provisioning); AWS's own advice is to retry.
    "waf-association": RetryCase(
        codes=frozenset({"WAFUnavailableEntityException"}), timeout="eventual-consistency",
        why="WAF does not know the new load balancer yet"),
}

# One line per code a user is likely to meet, said the way a colleague would say it.
HINTS: dict[str, str] = {
    "VpcLimitExceeded": "the region's VPC quota (default 5) is used up: delete unused VPCs or raise the quota",
    "AddressLimitExceeded": "the region's Elastic IP quota (default 5) is used up: release unused addresses or raise the quota",
    "NatGatewayLimitExceeded": "the NAT gateway quota for a zone is used up: delete unused NAT gateways or raise the quota",
    "InternetGatewayLimitExceeded": "the internet gateway quota is used up: delete unused ones or raise the quota",
    "RulesPerSecurityGroupLimitExceeded": "the security group rule quota is used up",
    "DependencyViolation": "something still uses this resource; the message above names what, when it is known",
    "InvalidParameterValue": "AWS rejected a value; check the options given to provision",
    "InsufficientFreeAddressesInSubnet": "the subnet has no free addresses; use a larger CIDR",
    "Throttling": "AWS throttled the calls beyond the retry budget; run again in a minute",
    "ThrottlingException": "AWS throttled the calls beyond the retry budget; run again in a minute",
    "RequestLimitExceeded": "AWS throttled the calls beyond the retry budget; run again in a minute",
    "DuplicateListener": "the load balancer already has a listener on that port that the stack did not make; delete it and run again",
    "PriorityInUse": "another rule on the HTTPS listener holds the priority the stack's /api/* rule needs; delete or renumber it",
    "OperationNotPermitted": "deletion or termination protection is on; turn it off (for the load balancer, `provision up` does) and run again",
}


def _response(exc: BaseException) -> dict | None:
    # A ClientError carries `response`; a WaiterError the last response it polled.
    response = getattr(exc, "response", None) or getattr(exc, "last_response", None)
    return response if isinstance(response, dict) else None


def error_code(exc: BaseException) -> str | None:
    """The AWS error code of a botocore ClientError or WaiterError (or None for anything else)."""
    response = _response(exc)
    if response is not None:
        return response.get("Error", {}).get("Code")
    return None


def error_message(exc: BaseException) -> str:
    response = _response(exc)
    if isinstance(response, dict):
        return response.get("Error", {}).get("Message") or str(exc)
    return str(exc)


def is_gone(exc: BaseException) -> bool:
    return error_code(exc) in gone_codes()


def hint_for(code: str | None) -> str | None:
    if code in PERMISSION_CODES:
        return "the credentials in use are not allowed this action; grant it in IAM or use another --profile"
    if code in CREDENTIAL_CODES:
        return "the credentials are invalid or expired; refresh them (e.g. `aws sso login`) or try --sandbox"
    return HINTS.get(code or "")


def lookup(fn: Callable, *args, gone: frozenset | None = None, **kwargs):
    """fn(*args, **kwargs), or None when AWS answers that what it names does not exist: one of
    `gone`, or of every kind's gone codes (a read of a deleted or never-made resource). "Not
    found" means absent here, and nowhere else needs the try/except."""
    from botocore.exceptions import ClientError

    try:
        return fn(*args, **kwargs)
    except ClientError as e:
        if error_code(e) in (gone if gone is not None else gone_codes()):
            return None
        raise
