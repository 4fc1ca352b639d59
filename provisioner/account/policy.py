"""`provision policy`: the least-privilege IAM policy an operator needs for a stack shape, made
from what each step declares (provisioner/engine/kinds.py: `iam`, `listing`), never written by hand.

- every action a step of the shape needs to create, read, change and delete its resource, and
  read and delete for the optional steps it does not have (`down` looks for all of them);
- resources scoped to the stack's name prefix where AWS names them by name (IAM roles and
  instance profiles under /provision/<stack>-*, buckets <stack>-assets-*, load balancers and
  target groups <stack>-*, the Auto Scaling Group, the key pair); EC2 ids are AWS's to choose;
- iam:PassRole for the stack's instance role only, to EC2 only (iam:PassedToService);
- iam:CreateServiceLinkedRole for ELB's and Auto Scaling's roles only (iam:AWSServiceName);
- the reads of `plan`, `status` and `list`: every listing's list and tag calls, and the few
  account-wide reads below.
"""

from __future__ import annotations

import fnmatch
import functools
import json
from typing import Iterable

from provisioner.engine.kinds import BatchTags, Grant, ItemTags

# The reads that belong to no kind: the preflight (zones, instance types, quotas, the image),
# `list --all-regions`, `status`'s target health and scaling activities.
ACCOUNT_READS = (
    "ec2:DescribeAvailabilityZones", "ec2:DescribeRegions", "ec2:DescribeAccountAttributes",
    "ec2:DescribeInstanceTypes", "ec2:DescribeInstanceTypeOfferings", "ec2:DescribeImages",
    "ec2:DescribeNetworkInterfaces",
    "elasticloadbalancing:DescribeTargetHealth", "autoscaling:DescribeScalingActivities",
    "servicequotas:GetServiceQuota", "servicequotas:GetAWSDefaultServiceQuota",
    "sts:GetCallerIdentity",
    # `provision prices --refresh`
    "pricing:GetProducts",
    # `provision verify`, beyond what the kinds read (tests/test_verify.py checks every call it makes):
    # the account's trails and their selectors (CloudTrail.1), the account's Block Public Access (S3.1).
    "cloudtrail:DescribeTrails", "cloudtrail:GetEventSelectors", "s3:GetAccountPublicAccessBlock",
)
# IAM action names that are not "<signing name>:<operation>".
OPERATION_ACTIONS = {
    ("s3", "ListBuckets"): ("s3:ListAllMyBuckets",),
    ("s3", "HeadBucket"): ("s3:ListBucket",),
    ("s3", "ListObjects"): ("s3:ListBucket",),
    ("s3", "ListObjectsV2"): ("s3:ListBucket",),
    ("s3", "ListObjectVersions"): ("s3:ListBucketVersions",),
    ("s3", "HeadObject"): ("s3:GetObject",),
    ("s3", "DeleteObjects"): ("s3:DeleteObject",),
    ("s3", "PutPublicAccessBlock"): ("s3:PutBucketPublicAccessBlock",),
    ("s3", "GetPublicAccessBlock"): ("s3:GetBucketPublicAccessBlock",),
    ("s3", "PutBucketEncryption"): ("s3:PutEncryptionConfiguration",),
    ("s3", "GetBucketEncryption"): ("s3:GetEncryptionConfiguration",),
    ("s3", "DeleteBucketTagging"): ("s3:PutBucketTagging",),
    ("s3", "CreateMultipartUpload"): ("s3:PutObject",),
    ("s3", "UploadPart"): ("s3:PutObject",),
    ("s3", "CompleteMultipartUpload"): ("s3:PutObject",),
    ("s3", "AbortMultipartUpload"): ("s3:AbortMultipartUpload",),
    # S3 Control's account-wide setting (its signing name is s3 too).
    ("s3control", "GetPublicAccessBlock"): ("s3:GetAccountPublicAccessBlock",),
    # CloudFront authorizes a create with tags as the create and the tagging.
    ("cloudfront", "CreateDistributionWithTags"): ("cloudfront:CreateDistribution", "cloudfront:TagResource"),
}
PARTITION = "aws"


def iam_actions(signing_name: str, operation: str) -> tuple[str, ...]:
    """The IAM action(s) one API operation is authorized by."""
    return OPERATION_ACTIONS.get((signing_name, operation)) or (f"{signing_name}:{operation}",)


@functools.lru_cache(maxsize=None)
def _model(service: str):
    import botocore.session

    return botocore.session.get_session().get_service_model(service)


def _api_name(service: str, method: str) -> tuple[str, str]:
    """(signing name, API operation) of a boto3 client method, from botocore's model alone."""
    from botocore import xform_name

    model = _model(service)
    for name in model.operation_names:
        if xform_name(name) == method:
            return model.signing_name, name
    raise ValueError(f"{service} has no operation {method}")


def listing_actions(listing) -> list[str]:
    """What the inventory calls to list a kind and read its tags."""
    out = list(iam_actions(*_api_name(listing.service, listing.operation)))
    if isinstance(listing.tags, (BatchTags, ItemTags)):
        out += iam_actions(*_api_name(listing.service, listing.tags.operation))
    return out


def _fill(resource: str, names: dict) -> str:
    return resource if resource == "*" else resource.format(**names)


def _grants(config) -> list[Grant]:
    from provisioner.engine.registry import listings, plan_steps

    steps, retired = plan_steps(config)
    _, also_removed = plan_steps(config.superset())
    grants: list[Grant] = []
    seen: set[type] = set()
    for step in steps.values():
        if type(step) not in seen:
            seen.add(type(step))
            grants += [g for _, g in type(step).iam.grants()]
    removed = {**retired, **{n: s for n, s in also_removed.items() if n not in steps}}
    for step in removed.values():
        if type(step) not in seen:
            seen.add(type(step))
            grants += [g for _, g in type(step).iam.grants(("read", "delete"))]
    reads = sorted({a for listing in listings() for a in listing_actions(listing)} | set(ACCOUNT_READS))
    grants.append(Grant(tuple(reads)))
    return grants


def document(config, stack: str, region: str, account: str, partition: str = PARTITION) -> dict:
    """The policy document (IAM JSON) for a stack of this shape, name and place. `account` or
    `region` may be "*" when unknown."""
    names = {"partition": partition, "region": region, "account": account, "stack": stack}
    merged: dict[tuple, set[str]] = {}
    for grant in _grants(config):
        resources = tuple(sorted({_fill(r, names) for r in grant.resources}))
        condition = json.dumps(grant.condition, sort_keys=True) if grant.condition else ""
        merged.setdefault((resources, condition), set()).update(grant.actions)
    statements = []
    # Unscoped first, then by resource: stable output, so a diff of two runs means a change.
    for n, ((resources, condition), acts) in enumerate(sorted(merged.items(), key=lambda kv: (kv[0][0] != ("*",), kv[0]))):
        statement = {"Sid": _sid(resources, condition, n), "Effect": "Allow", "Action": sorted(acts),
                     "Resource": list(resources) if len(resources) > 1 else resources[0]}
        if condition:
            statement["Condition"] = json.loads(condition)
        statements.append(statement)
    return {"Version": "2012-10-17", "Statement": statements}


def _sid(resources: tuple, condition: str, n: int) -> str:
    if resources == ("*",) and not condition:
        return "Unscoped"
    words = {"iam:PassedToService": "PassRole", "iam:AWSServiceName": "ServiceLinkedRole"}
    for key, word in words.items():
        if key in condition:
            return f"{word}{n}"
    return f"Scoped{n}"


def allows(policy: dict, action: str) -> bool:
    """Whether some statement of `policy` allows `action` (on some resource): wildcards in the
    policy's actions as IAM reads them (case-insensitive)."""
    for statement in policy["Statement"]:
        acts = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        if statement["Effect"] == "Allow" and any(fnmatch.fnmatchcase(action.lower(), a.lower()) for a in acts):
            return True
    return False


def summary_lines(policy: dict) -> Iterable[str]:
    for statement in policy["Statement"]:
        resource = statement["Resource"]
        where = resource if isinstance(resource, str) else ", ".join(resource)
        condition = f" when {json.dumps(statement['Condition'])}" if statement.get("Condition") else ""
        yield f"{statement['Sid']}: {len(statement['Action'])} action(s) on {where}{condition}"


# -- the command -----------------------------------------------------------------------------------

ACCOUNT_RE = r"\A(?:[0-9]{12}|\*)\Z"


def cmd_policy(opts, reporter, overrides: dict, as_json: bool, account: str | None = None) -> int:
    """Print the policy for the stack's shape: the saved one (a stack that exists) with the
    options given. The account and region come from --account/--region, else from the
    credentials when there are any; else the policy names any account ("*"), with a warning."""
    import re

    from provisioner.shape.config import StackConfig, validate_stack_name
    from provisioner.engine.errors import ConfigError, ProvisionError
    from provisioner.commands.connection import Connection
    from provisioner.engine.state import StateFile

    validate_stack_name(opts.stack)
    if account is not None and not re.fullmatch(ACCOUNT_RE, account):
        raise ConfigError(f"--account {account!r} is not a 12-digit AWS account id (or *)")
    saved = StateFile(opts.state_dir, opts.stack).read()
    config = StackConfig.from_dict(saved.config if saved else {}).merged(overrides)
    config.validate()
    region, partition = opts.region, PARTITION
    if account is None or region is None:
        try:
            connection = Connection.open(opts)
            region = region or connection.region
            if account is None:
                ctx = connection.context(opts.stack, connection.region, config, reporter)
                account = connection.identify(ctx)
                partition = (ctx.owner or "arn:aws:").split(":")[1] or PARTITION
        except ProvisionError as e:
            reporter.warn(f"{e.message}; the policy names {'any account' if account is None else account}"
                          f"{' and any region' if region is None else ''} ('*'): pass --account and --region "
                          "to scope it")
    document_ = document(config, opts.stack, region or "*", account or "*", partition)
    if as_json:
        print(json.dumps(document_, indent=2))
        return 0
    reporter.out.print(f"IAM policy for stack {opts.stack!r} (account {account or '*'}, region {region or '*'}): "
                       f"{sum(len(s['Action']) for s in document_['Statement'])} actions in "
                       f"{len(document_['Statement'])} statements", highlight=False)
    for line in summary_lines(document_):
        reporter.out.print(f"  {line}", highlight=False, overflow="fold")
    reporter.out.print(f"Save it with `provision policy --stack {opts.stack} --json > policy.json`, then attach it "
                       "(see the README, \"The IAM policy an operator needs\").", highlight=False)
    return 0
