"""Checks made before anything changes: region, credentials and account, availability zones.
Each failure is a ConfigError (exit 2) that says what to do."""

from __future__ import annotations

import difflib
import os

from .config import ZONE_COUNT
from .context import RunContext
from .errors import AwsFailure, ConfigError
from .retries import CREDENTIAL_CODES, PERMISSION_CODES, error_code, error_message, hint_for

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
        return ctx.client("sts").get_caller_identity()["Account"]
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


def availability_zones(ctx: RunContext) -> list[str]:
    """The first two zones of the region that are available and need no opt-in."""
    from botocore.exceptions import BotoCoreError, ClientError

    action = "ec2:DescribeAvailabilityZones"
    try:
        zones = ctx.ec2.describe_availability_zones(
            Filters=[{"Name": "state", "Values": ["available"]},
                     {"Name": "zone-type", "Values": ["availability-zone"]}])["AvailabilityZones"]
    except ClientError as e:
        refused = _refused(e, action)
        if refused is not None:
            raise refused from None
        raise AwsFailure(f"{action} failed with {error_code(e)}: {error_message(e)}",
                         hint=hint_for(error_code(e))) from None
    except BotoCoreError as e:
        raise AwsFailure(f"{action} failed: {e}",
                         hint="check the network, AWS_ENDPOINT_URL, or try --sandbox") from None
    names = sorted(z["ZoneName"] for z in zones if z.get("OptInStatus", "opt-in-not-required") == "opt-in-not-required")
    if len(names) < ZONE_COUNT:
        raise ConfigError(f"region {ctx.region} has {len(names)} available zone(s); the stack needs "
                          f"{ZONE_COUNT} for a load balancer", hint="choose another --region")
    return names[:ZONE_COUNT]
