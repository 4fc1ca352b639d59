"""Checks made before anything changes: region, credentials and account, availability zones.
Each failure is a ConfigError (exit 2) that says what to do."""

from __future__ import annotations

import difflib
import os

from provisioner.shape.config import ZONE_COUNT
from provisioner.engine.context import RunContext
from provisioner.engine.errors import AwsFailure, ConfigError
from provisioner.engine.retries import CREDENTIAL_CODES, PERMISSION_CODES, error_code, error_message, hint_for
from provisioner.shape.tags import fit_tag_value

SANDBOX_REGION = "us-east-1"


def resolve_region(region: str | None, profile: str | None, sandbox: bool) -> str:
    """--region, else AWS_REGION / AWS_DEFAULT_REGION, else the profile's region."""
    region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if not region and sandbox:
        region = SANDBOX_REGION
    if not region:
        import botocore.session
        from botocore.exceptions import ProfileNotFound

        session = botocore.session.Session(profile=profile)
        try:
            region = session.get_config_variable("region")
        except ProfileNotFound:
            raise ConfigError(f"AWS profile {profile!r} is not configured",
                              hint="check ~/.aws/config, or use `aws configure --profile NAME`") from None
    if not region:
        raise ConfigError("no AWS region given",
                          hint="pass --region (e.g. --region eu-west-1), set AWS_REGION, or set a "
                               "region in your AWS profile; or try --sandbox")
    known = known_regions()
    if region not in known:
        close = difflib.get_close_matches(region, sorted(known), n=1)
        raise ConfigError(f"unknown AWS region {region!r}",
                          hint=(f"did you mean {close[0]}? " if close else "")
                          + "if the region is newer than this boto3, upgrade boto3")
    return region


def known_regions() -> set[str]:
    import botocore.session

    session = botocore.session.get_session()
    regions: set[str] = set()
    for partition in session.get_available_partitions():
        regions.update(session.get_available_regions("ec2", partition_name=partition))
    return regions


def caller_account(ctx: RunContext) -> str:
    """The account the credentials belong to: the first call of every run, so that missing or
    expired credentials stop the run before anything changes."""
    from botocore.exceptions import (BotoCoreError, ClientError, NoCredentialsError,
                                     PartialCredentialsError, ProfileNotFound)

    try:
        identity = ctx.client("sts").get_caller_identity()
        # Stamped as provision:owner on what this run creates: `list` says whose a stack is. Made
        # to fit a tag: IAM names may hold a comma and an IAM user's path can take the ARN past 256
        # characters, and refusing the caller's own identity would leave them nothing to change.
        arn = identity.get("Arn")
        ctx.owner = fit_tag_value(arn) if arn else None
        return identity["Account"]
    except ProfileNotFound:
        raise ConfigError(f"AWS profile {ctx.profile!r} is not configured",
                          hint="check ~/.aws/config, or use `aws configure --profile NAME`") from None
    except (NoCredentialsError, PartialCredentialsError):
        raise ConfigError("no AWS credentials found",
                          hint="configure them with `aws configure`, `aws sso login --profile NAME` or the "
                               "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY variables; or try --sandbox, "
                               "which needs no AWS account") from None
    except ClientError as e:
        refused = _refused(e, "sts:GetCallerIdentity")
        if refused is not None:
            raise refused from None
        raise
    except BotoCoreError as e:
        # Expired SSO tokens, unreachable endpoints and the like: all before any change.
        name = type(e).__name__
        hint = ("run `aws sso login` and try again" if "Token" in name or "SSO" in name
                else "check the network, AWS_ENDPOINT_URL, or try --sandbox")
        raise ConfigError(f"cannot use the AWS credentials or endpoint: {e}", hint=hint) from None


def _refused(e, action: str) -> ConfigError | None:
    """The error for credentials or permissions refused before any change; None for other codes."""
    code = error_code(e)
    if code in CREDENTIAL_CODES:
        return ConfigError(f"the AWS credentials were refused ({code}): {error_message(e)}",
                           hint=hint_for(code))
    if code in PERMISSION_CODES:
        return ConfigError(f"access denied for {action}: {error_message(e)}", hint=hint_for(code))
    return None


def region_zones(ctx: RunContext) -> list[str]:
    """The region's zones that are available and need no opt-in, by name."""
    zones = _ask(ctx, "ec2:DescribeAvailabilityZones", ctx.ec2.describe_availability_zones, set(),
                 Filters=[{"Name": "state", "Values": ["available"]},
                          {"Name": "zone-type", "Values": ["availability-zone"]}])["AvailabilityZones"]
    return sorted(z["ZoneName"] for z in zones if z.get("OptInStatus", "opt-in-not-required") == "opt-in-not-required")


def offering_zones(ctx: RunContext, instance_type: str, zones: list[str]) -> set[str]:
    """Which of `zones` offer the instance type."""
    offerings = _ask(ctx, "ec2:DescribeInstanceTypeOfferings", ctx.ec2.describe_instance_type_offerings, set(),
                     LocationType="availability-zone",
                     Filters=[{"Name": "instance-type", "Values": [instance_type]},
                              {"Name": "location", "Values": list(zones)}])
    return {o["Location"] for o in offerings["InstanceTypeOfferings"]}


def availability_zones(ctx: RunContext) -> list[str]:
    """The first two zones of the region that are available, need no opt-in and offer the
    instance type. Zone names are mapped to physical zones per account (one account's
    us-east-1a is another's us-east-1c), and not every zone offers every type (us-east-1e has no
    t3): the first two names would launch nothing in such a zone, for as long as the stack lives."""
    names = region_zones(ctx)
    if len(names) < ZONE_COUNT:
        raise ConfigError(f"region {ctx.region} has {len(names)} available zone(s); the stack needs "
                          f"{ZONE_COUNT} for a load balancer", hint="choose another --region")
    instance_type = ctx.config.instance_type
    offered = offering_zones(ctx, instance_type, names)
    if not offered:
        check_instance_type(ctx)  # offered nowhere: perhaps no such type at all
    usable = [z for z in names if z in offered]
    if len(usable) < ZONE_COUNT:
        raise ConfigError(f"instance type {instance_type} is offered in {len(usable)} zone(s) of {ctx.region} "
                          f"({', '.join(usable) or 'none'}); the stack needs {ZONE_COUNT}",
                          hint="pick another --instance-type (t3.micro and t3.small are offered almost everywhere) "
                               "or another --region")
    return usable[:ZONE_COUNT]


def check_zones(ctx: RunContext, zones: list[str]) -> None:
    """Zones given with --zones (or a stack file) exist in this region and are available."""
    names = region_zones(ctx)
    unknown = [z for z in zones if z not in names]
    if unknown:
        near = difflib.get_close_matches(unknown[0], names, n=1)
        raise ConfigError(f"zone(s) {', '.join(unknown)} are not available zones of {ctx.region} "
                          f"(it has {', '.join(names)})",
                          hint=f"did you mean {near[0]}?" if near else "leave --zones out to choose them automatically")


def check_instance_type(ctx: RunContext) -> None:
    """The instance type exists in this region."""
    instance_type = ctx.config.instance_type
    known = _ask(ctx, "ec2:DescribeInstanceTypes", ctx.ec2.describe_instance_types, {"InvalidInstanceType"},
                 InstanceTypes=[instance_type])
    if known is None:
        raise ConfigError(f"instance type {instance_type!r} does not exist in {ctx.region}",
                          hint="pick one from `aws ec2 describe-instance-types`, e.g. t3.micro or t3.small")


def check_compute(ctx: RunContext) -> None:
    """The instance type exists in this region and is offered in both zones, and an AMI given
    with --ami is there too: each would otherwise fail only when the Auto Scaling Group launches,
    minutes in, as a scaling activity nobody reads."""
    config = ctx.config
    check_instance_type(ctx)
    if config.ami:
        found = _ask(ctx, "ec2:DescribeImages", ctx.ec2.describe_images,
                     {"InvalidAMIID.NotFound", "InvalidAMIID.Malformed", "InvalidAMIID.Unavailable"},
                     ImageIds=[config.ami])
        if not (found or {}).get("Images"):
            raise ConfigError(f"AMI {config.ami} does not exist in {ctx.region} (or is not shared with "
                              f"account {ctx.account})",
                              hint="AMI ids differ per region; leave --ami out for the latest Ubuntu 24.04 LTS")
    if config.zones:
        # Not every type is offered in every zone (us-east-1e has no t3); the group would try
        # and fail to launch in that zone for as long as it exists.
        offered = offering_zones(ctx, config.instance_type, list(config.zones))
        missing = [z for z in config.zones if z not in offered]
        if missing:
            raise ConfigError(f"instance type {config.instance_type} is not offered in {', '.join(missing)}",
                              hint="pick another --instance-type (t3.micro and t3.small are offered almost "
                                   "everywhere), or other --zones")


def _ask(ctx: RunContext, action: str, call, absent_codes: set[str], **params) -> dict | None:
    """A preflight read: None when AWS answers one of `absent_codes` ("no such thing"); refused
    credentials or permissions are a ConfigError (nothing has changed yet); anything else an
    AwsFailure naming the action."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return call(**params)
    except ClientError as e:
        if error_code(e) in absent_codes:
            return None
        refused = _refused(e, action)
        if refused is not None:
            raise refused from None
        raise AwsFailure(f"{action} failed with {error_code(e)}: {error_message(e)}",
                         hint=hint_for(error_code(e))) from None
    except BotoCoreError as e:
        raise AwsFailure(f"{action} failed: {e}",
                         hint="check the network, AWS_ENDPOINT_URL, or try --sandbox") from None


# What to do about a certificate ACM has but an HTTPS listener cannot use, by its Status.
CERTIFICATE_STATUS_HINTS = {
    "PENDING_VALIDATION": "complete its DNS (or email) validation in ACM, then run again; or leave out "
                          "--certificate-arn for a self-signed certificate",
    "VALIDATION_TIMED_OUT": "ACM gave up validating it: request a new certificate and validate it within 72 hours",
    "EXPIRED": "renew or re-import it, or request a new one",
    "REVOKED": "request a new certificate",
    "FAILED": "request a new certificate (see its FailureReason in the ACM console)",
    "INACTIVE": "request a new certificate",
}


def check_certificate(ctx: RunContext) -> None:
    """A --certificate-arn must be usable by the load balancer before anything is built: in the
    ALB's own region (ELB cannot use another region's certificate), known to ACM in this account,
    ISSUED and not expired. The manual build met the first two only at the listener, minutes in."""
    import datetime as dt

    arn = ctx.config.certificate_arn
    if not arn:
        return
    region = ctx.config.certificate_region()
    if region is not None and region != ctx.region:
        raise ConfigError(f"certificate {arn} is in {region}, but the load balancer is in {ctx.region}",
                          hint=f"an ALB can only use an ACM certificate of its own region: import or request "
                               f"the certificate in {ctx.region}, or build the stack with --region {region}")
    # A malformed ARN never gets here (the configuration checks its form), so every "no such
    # certificate" answer means ACM does not have it in this account and region.
    found = _ask(ctx, "acm:DescribeCertificate", ctx.client("acm").describe_certificate,
                 {"ResourceNotFoundException", "ValidationException", "InvalidArnException"}, CertificateArn=arn)
    if found is None:
        raise ConfigError(f"ACM has no certificate {arn} (searched account {ctx.account or 'unknown'} "
                          f"in {ctx.region})",
                          hint="check the ARN and that the credentials (--profile) belong to the "
                               f"certificate's account: `aws acm list-certificates --region {ctx.region}`")
    certificate = found["Certificate"]
    status = certificate.get("Status")
    if status != "ISSUED":
        reason = f" ({certificate['FailureReason']})" if certificate.get("FailureReason") else ""
        raise ConfigError(f"certificate {arn} is {status}{reason}, not ISSUED: a listener cannot use it",
                          hint=CERTIFICATE_STATUS_HINTS.get(status, "use an ISSUED certificate"))
    not_after = certificate.get("NotAfter")
    if not_after is not None:
        if not_after.tzinfo is None:
            not_after = not_after.replace(tzinfo=dt.timezone.utc)
        if not_after <= dt.datetime.now(dt.timezone.utc):
            raise ConfigError(f"certificate {arn} expired on {not_after:%Y-%m-%d %H:%M} UTC",
                              hint=CERTIFICATE_STATUS_HINTS["EXPIRED"])
