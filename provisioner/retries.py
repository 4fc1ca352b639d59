"""Everything about AWS errors, declared once: which codes mean "wait and try again" (and for how
long), which mean "already gone", which are about credentials or permissions, and a hint per code.

Two layers, as the best boto3 tools do it: botocore's own retry mode absorbs throttling and
transient HTTP errors on every call; the table below covers the codes that mean an order is valid
but early (eventual consistency) or late (a dependency still going away). Retries go by
``Error.Code``, never by message text, and never for AccessDenied or validation errors.
"""

from __future__ import annotations

from dataclasses import dataclass

# Seconds, before --timeout-scale. One table so that every wait in the tool is tuned in one place.
TIMEOUTS: dict[str, float] = {
    "default": 300,
    # A resource created a moment ago can be invisible to the next call for a few seconds.
    "eventual-consistency": 120,
    # A deleted NAT gateway or load balancer keeps its network interfaces for minutes; the
    # subnet, security group and internet gateway refuse to go until they are released.
    "dependency": 1200,
    # NAT gateways take 1-5 minutes to become available and about a minute to be deleted.
    "nat-gateway": 900,
    # An Application Load Balancer is `provisioning` for 2-5 minutes.
    "load-balancer": 600,
    # Terminating an Auto Scaling Group's instances (shutdown, deregistration delay) takes minutes.
    "instances-terminated": 900,
    # A new IAM instance profile is refused by EC2 and Auto Scaling for about 10 seconds,
    # occasionally a minute or two.
    "instance-profile": 180,
    "sandbox-start": 30,
}

# The botocore retry mode for throttling: adaptive also rate-limits the client after a throttle,
# which keeps many concurrent steps (and many stacks at once) under the account's API limits.
BOTOCORE_RETRIES = {"mode": "adaptive", "total_max_attempts": 12}

# "X not found" for a thing we created or were given moments ago. During create/update these
# mean AWS has not finished propagating it; during delete they mean it is already gone.
NOT_FOUND_CODES = frozenset({
    "InvalidVpcID.NotFound",
    "InvalidSubnetID.NotFound",
    "InvalidInternetGatewayID.NotFound",
    "InvalidRouteTableID.NotFound",
    "InvalidAllocationID.NotFound",
    "InvalidAssociationID.NotFound",
    "InvalidGroup.NotFound",
    "InvalidGroupId.NotFound",
    "InvalidNetworkInterfaceID.NotFound",
    "InvalidNatGatewayID.NotFound",
    "NatGatewayNotFound",
    "InvalidInstanceID.NotFound",
    "InvalidLaunchTemplateId.NotFound",
    "InvalidLaunchTemplateName.NotFoundException",
    "InvalidKeyPair.NotFound",
    # IAM is eventually consistent across its own calls: a role created a moment ago can be
    # unknown to AddRoleToInstanceProfile.
    "NoSuchEntity",
    # ELBv2: a target group, load balancer or listener created moments ago can be unknown to the
    # next call (a listener forwarding to it, an attribute change), and a certificate imported
    # into ACM moments ago is CertificateNotFound to CreateListener for a while.
    "TargetGroupNotFound",
    "LoadBalancerNotFound",
    "ListenerNotFound",
    "CertificateNotFound",
})

# Codes that, answered to a delete, mean there is nothing left to delete.
GONE_CODES = NOT_FOUND_CODES | frozenset({
    "Gateway.NotAttached",
    "InvalidPermission.NotFound",
    "InvalidRoute.NotFound",
    "NoSuchBucket",
    "NoSuchKey",
    "LoadBalancerNotFound",
    "TargetGroupNotFound",
    "ListenerNotFound",
    "RuleNotFound",
    "ResourceNotFoundException",
})

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
    codes: frozenset[str]
    timeout: str  # key into TIMEOUTS
    why: str
    # Only for the one condition AWS reports with a generic code (ValidationError): the part of
    # the message that tells it apart. Every other case goes by code alone.
    message: str | None = None

    def matches(self, exc: BaseException) -> bool:
        return error_code(exc) in self.codes and (self.message is None or self.message in error_message(exc))


# The one table of "wait and try again". Call sites name a case; the case says which codes and
# for how long. Deadlines come from TIMEOUTS (scaled by --timeout-scale).
WAIT_AND_RETRY: dict[str, RetryCase] = {
    "eventual-consistency": RetryCase(
        codes=NOT_FOUND_CODES, timeout="eventual-consistency",
        why="AWS has not yet propagated a resource created moments ago"),
    "dependency": RetryCase(
        codes=frozenset({"DependencyViolation", "ResourceInUse", "ResourceInUseException",
                         "InvalidIPAddress.InUse", "DeleteConflict", "ScalingActivityInProgress"}),
        timeout="dependency",
        why="something that uses it is still going away"),
    # Auto Scaling answers ValidationError and EC2 InvalidParameterValue, both generic codes,
    # while a new instance profile has not reached them yet; Terraform's AWS provider retries
    # the same message.
    "instance-profile": RetryCase(
        codes=frozenset({"ValidationError", "InvalidParameterValue"}), timeout="instance-profile",
        why="a new IAM instance profile takes seconds to reach EC2", message="Invalid IAM Instance Profile"),
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
    return error_code(exc) in GONE_CODES


def hint_for(code: str | None) -> str | None:
    if code in PERMISSION_CODES:
        return "the credentials in use are not allowed this action; grant it in IAM or use another --profile"
    if code in CREDENTIAL_CODES:
        return "the credentials are invalid or expired; refresh them (e.g. `aws sso login`) or try --sandbox"
    return HINTS.get(code or "")
