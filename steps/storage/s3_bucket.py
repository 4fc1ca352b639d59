import json
import re

from provisioner.engine.context import TAG_STACK, Resource
from provisioner.engine.errors import ConfigError
from provisioner.engine.kinds import Free, Iam, ItemTags, Listing, actions
from provisioner.engine.registry import Step, created, register
from provisioner.engine.retries import PERMISSION_CODES, error_code

# Public read on the product images only; everything else (releases/) stays private.
IMAGES_PREFIX = "images/"
RELEASES_PREFIX = "releases/"
# S3's own bucket name limit.
BUCKET_NAME_MAX = 63
# DeleteObjects takes at most 1000 keys per call.
DELETE_BATCH = 1000

# Only a bucket policy may make something public: ACLs are off (BucketOwnerEnforced) and any
# public ACL is blocked, while the two policy switches stay off so that the images/ statement
# is accepted.
PUBLIC_ACCESS_BLOCK = {"BlockPublicAcls": True, "IgnorePublicAcls": True,
                       "BlockPublicPolicy": False, "RestrictPublicBuckets": False}
# With --cdn nothing in the bucket is public: CloudFront reads images/ through its Origin Access
# Control, so Block Public Access is fully on.
PRIVATE_ACCESS_BLOCK = {key: True for key in PUBLIC_ACCESS_BLOCK}
DISTRIBUTION = "cloudfront-distribution"
OWNERSHIP = "BucketOwnerEnforced"
# SSE-S3 even with --audit: the product images are read anonymously (without --cdn), and S3
# refuses an anonymous GET of an object encrypted with a KMS key (the caller must be allowed
# kms:Decrypt, which no anonymous caller can be). With --cdn only CloudFront reads them; Origin
# Access Control could decrypt with the key if its policy named the distribution, which would tie
# the key to the distribution's ARN; the images are public content, so SSE-S3 protects them as well.
ENCRYPTION_RULE = {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}, "BucketKeyEnabled": True}
# The private buckets (only with --audit) encrypt with the stack's key instead. Named, not
# imported: steps/security/kms_key.py imports this module.
KMS_KEY_STEP = "kms-key"


def kms_encryption_rule(key_arn: str) -> dict:
    """SSE-KMS with the stack's key, and an S3 Bucket Key: S3 then asks KMS for a data key per
    bucket and period instead of per object, which cuts the KMS requests (and their price) by up
    to 99%."""
    return {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key_arn},
            "BucketKeyEnabled": True}


def bucket_name(ctx) -> str:
    """Globally unique without a random part, so a crash between CreateBucket and
    PutBucketTagging leaves a bucket the next run can still find by name."""
    name = f"{ctx.stack}-assets-{ctx.account}-{ctx.region}"
    if len(name) > BUCKET_NAME_MAX:
        raise ConfigError(f"bucket name {name!r} is {len(name)} characters; S3 allows {BUCKET_NAME_MAX}",
                          hint="use a shorter --stack name")
    return name


def partition(region: str) -> str:
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


def bucket_arn(ctx, bucket: str) -> str:
    return f"arn:{partition(ctx.region)}:s3:::{bucket}"


def public_access_block(ctx) -> dict:
    return PRIVATE_ACCESS_BLOCK if ctx.config.cdn else PUBLIC_ACCESS_BLOCK


def served_images_url(ctx, bucket: str) -> str:
    """Where the app's pages point for the images: the distribution with --cdn (cached at its
    edge, and the only reader of the bucket), else the bucket itself."""
    distribution = ctx.dep(DISTRIBUTION) if ctx.config.cdn else None
    if distribution is not None:
        return distribution.attrs["images_base_url"]
    return images_base_url(ctx, bucket)


def images_base_url(ctx, bucket: str) -> str:
    if ctx.endpoint_url:  # the sandbox's emulator serves buckets path-style on its own address
        return f"{ctx.endpoint_url.rstrip('/')}/{bucket}/{IMAGES_PREFIX}"
    return f"https://{bucket}.s3.{ctx.region}.amazonaws.com/{IMAGES_PREFIX}"


def bucket_policy(ctx, bucket: str) -> dict:
    arn = bucket_arn(ctx, bucket)
    read = {"Sid": "PublicReadProductImages", "Effect": "Allow", "Principal": "*",
            "Action": "s3:GetObject", "Resource": f"{arn}/{IMAGES_PREFIX}*"}
    if ctx.config.cdn:
        distribution = ctx.dep(DISTRIBUTION)
        # This stack's distribution only: any other distribution (anyone's) would read the
        # bucket through the same service principal without the condition.
        source = distribution.attrs["arn"] if distribution is not None else (
            f"arn:{partition(ctx.region)}:cloudfront::{ctx.account}:distribution/(not made yet)")
        read = {"Sid": "CloudFrontReadsProductImages", "Effect": "Allow",
                "Principal": {"Service": "cloudfront.amazonaws.com"}, "Action": "s3:GetObject",
                "Resource": f"{arn}/{IMAGES_PREFIX}*", "Condition": {"StringEquals": {"AWS:SourceArn": source}}}
    return {
        "Version": "2012-10-17",
        "Statement": [
            read,
            {"Sid": "DenyInsecureTransport", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
             "Resource": [arn, f"{arn}/*"], "Condition": {"Bool": {"aws:SecureTransport": "false"}}},
        ],
    }


def _canonical(value):
    """A policy as a comparable value: AWS may hand back a one-element list as a scalar, and
    lists in any order."""
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in value.items()}
    if isinstance(value, list):
        items = [_canonical(v) for v in value]
        if len(items) == 1:
            return items[0]
        return sorted(items, key=lambda v: json.dumps(v, sort_keys=True))
    return value


BUCKET_ARNS = ("arn:{partition}:s3:::{stack}-assets-*", "arn:{partition}:s3:::{stack}-assets-*/*")
# What the steps that put objects in the bucket (the release, the images) need.
OBJECT_IAM = Iam(create=(actions("s3:PutObject", on=BUCKET_ARNS[1]),),
                 read=(actions("s3:GetObject", "s3:ListBucket", on=BUCKET_ARNS),),
                 change=(actions("s3:PutObject", on=BUCKET_ARNS[1]),),
                 delete=(actions("s3:DeleteObject", on=BUCKET_ARNS[1]),))


def _bucket_suffix(ctx) -> str:
    # Without the account (a context that never asked STS), any account's form of the name.
    account = re.escape(ctx.account) if ctx.account else r"\d{12}"
    return rf"-assets-{account}-{re.escape(ctx.region)}"


def _bucket_of_region(ctx, stack: str, name: str) -> bool:
    return re.fullmatch(re.escape(stack) + _bucket_suffix(ctx), name) is not None


@register
class AssetsBucket(Step):
    """The product images (public read on images/ only) and the app releases (private, releases/)."""

    kind = "s3_bucket"
    gone_codes = frozenset({"NoSuchBucket"})
    aws_type = "AWS::S3::Bucket"
    # S3 is global: buckets of other regions are dropped by name before their tags are read.
    listing = Listing("bucket", "s3", "list_buckets", "Buckets", "Name", label="S3 buckets", created_field="CreationDate",
                      tags=ItemTags("get_bucket_tagging", "Bucket", "TagSet", untagged_codes=frozenset({"NoSuchTagSet"})),
                      candidate=lambda ctx, i: re.search(_bucket_suffix(ctx) + "$", i["Name"]) is not None,
                      belongs=_bucket_of_region,
                      price=Free("storage and requests bill by use (the usage-based notes)"))
    iam = Iam(create=(actions("s3:CreateBucket", "s3:PutBucketTagging", "s3:PutBucketPublicAccessBlock",
                              "s3:PutBucketOwnershipControls", "s3:PutEncryptionConfiguration", "s3:PutBucketPolicy",
                              on=BUCKET_ARNS),),
              read=(actions("s3:ListBucket", "s3:GetBucketTagging", "s3:GetBucketPublicAccessBlock",
                            "s3:GetBucketPolicy", "s3:GetBucketOwnershipControls", "s3:GetEncryptionConfiguration",
                            on=BUCKET_ARNS), actions("s3:ListAllMyBuckets")),
              change=(actions("s3:PutBucketTagging", "s3:PutBucketPublicAccessBlock", "s3:PutBucketPolicy",
                              "s3:PutEncryptionConfiguration", "s3:PutBucketOwnershipControls", on=BUCKET_ARNS),),
              delete=(actions("s3:DeleteBucket", "s3:DeleteObject", "s3:ListBucket", "s3:ListBucketVersions",
                              "s3:DeleteObjectVersion", on=BUCKET_ARNS),))

    def __init__(self, cdn: bool = False):
        # With --cdn the policy names the distribution's ARN, so the distribution is made first
        # (from the bucket's name). Neither holds the other: `down` deletes both at once.
        super().__init__("assets-bucket", depends_on=(created(DISTRIBUTION, held=False),) if cdn else ())

    @classmethod
    def instances(cls, config):
        return [cls(config.cdn)]

    def bucket_name(self, ctx) -> str:
        return bucket_name(ctx)

    # -- find --------------------------------------------------------------------------------
    def find_all(self, ctx, known_id):
        # `down`, `plan` and `status` (read-only) pass a bucket that is not ours by; `up` stops.
        return self._lookup(ctx, known_id, refuse=not ctx.read_only)

    def check_name(self, ctx, known_id):
        if known_id and known_id == self.bucket_name(ctx):
            # The state knows the bucket by its name: the lookup by that id (the ownership
            # check before `up`, the walk of `plan`) refuses it if it is not the stack's.
            return
        self._lookup(ctx, known_id, refuse=True)

    def _lookup(self, ctx, known_id, refuse: bool):
        from botocore.exceptions import ClientError

        s3 = ctx.client("s3")
        name = self.bucket_name(ctx)
        for candidate in dict.fromkeys(n for n in (known_id, name) if n):
            try:
                s3.head_bucket(Bucket=candidate)
            except ClientError as e:
                if error_code(e) in ("404", "NoSuchBucket"):
                    continue
                if error_code(e) == "403":
                    # Another account's bucket. `down` just does not find ours; `up` and `plan`
                    # stop with the reason rather than at CreateBucket.
                    if not refuse:
                        continue
                    raise self._foreign(name) from None
                raise
            tags = self._tags(ctx, candidate)
            if candidate == known_id:
                ctx.claim(self.name, candidate, tags, "bucket")
                return [self._resource(ctx, candidate, tags)]
            if ctx.is_ours(tags, self.name):
                return [self._resource(ctx, candidate, tags)]
            # A bucket of the derived name without this stack's tags is someone else's (the tool
            # tags a bucket in the CreateBucket call itself): never adopted, emptied or deleted.
            # `down` and `status` do not see it; `up` and `plan` stop rather than take it.
            if not refuse:
                continue
            other = {t["Key"]: t["Value"] for t in tags}.get(TAG_STACK)
            owner = f"stack {other!r}'s" if other else "no stack's (it has none of provision's tags)"
            raise ConfigError(f"a bucket named {name} exists in this account and is {owner}; "
                              "refusing to adopt it",
                              hint="if it is a leftover you no longer need, empty and delete it "
                                   f"(`aws s3 rb s3://{name} --force`); else use another --stack name")
        return []

    def _foreign(self, name):
        return ConfigError(f"the bucket name {name} is taken by another AWS account (S3 names are global)",
                           hint="use another --stack name")

    def _tags(self, ctx, bucket) -> list[dict]:
        from botocore.exceptions import ClientError

        try:
            return ctx.client("s3").get_bucket_tagging(Bucket=bucket)["TagSet"]
        except ClientError as e:
            if error_code(e) == "NoSuchTagSet":
                return []
            raise

    def _resource(self, ctx, bucket, tags) -> Resource:
        return Resource(id=bucket, attrs={"bucket": bucket, "images_base_url": served_images_url(ctx, bucket)},
                        raw={"Tags": tags})

    # -- create ------------------------------------------------------------------------------
    def create(self, ctx):
        from botocore.exceptions import ClientError

        s3 = ctx.client("s3")
        name = self.bucket_name(ctx)
        tags = ctx.tags(self.name)
        # Tagged in the CreateBucket call itself (general purpose buckets take tags there since
        # 2025), so no crash can leave an untagged bucket that no later run may adopt.
        configuration = {"Tags": tags}
        # us-east-1 is S3's default location and refuses it as an explicit constraint.
        if ctx.region != "us-east-1":
            configuration["LocationConstraint"] = ctx.region
        tagged_at_creation = True
        try:
            try:
                s3.create_bucket(Bucket=name, CreateBucketConfiguration=configuration)
            except ClientError as e:
                # Tags at creation need s3:TagResource as well; a policy granting only the older
                # s3:PutBucketTagging is refused. Then create, and tag at once (as Terraform's
                # provider falls back).
                if error_code(e) not in PERMISSION_CODES:
                    raise
                configuration.pop("Tags")
                tagged_at_creation = False
                params = {"CreateBucketConfiguration": configuration} if configuration else {}
                s3.create_bucket(Bucket=name, **params)
        except ClientError as e:
            if error_code(e) == "BucketAlreadyExists":
                raise self._foreign(name) from None
            if error_code(e) != "BucketAlreadyOwnedByYou":  # a retried create: ours already
                raise
            tagged_at_creation = False
        if not tagged_at_creation:
            s3.put_bucket_tagging(Bucket=name, Tagging={"TagSet": tags})
        resource = self._resource(ctx, name, tags)
        self.update(ctx, resource, apply=True)
        return resource

    # -- converge: one helper per attribute, each returning its change line ---------------------
    def update(self, ctx, resource, apply):
        bucket = resource.id
        # Found before its dependencies (by name): the images' address follows --cdn.
        resource.attrs["images_base_url"] = served_images_url(ctx, bucket)
        changes = []
        for helper in (self._converge_tags, self._converge_ownership, self._converge_encryption,
                       # Block Public Access before the policy: a new bucket blocks public
                       # policies, and PutBucketPolicy with the images/ statement is refused.
                       self._converge_public_access_block, self._converge_policy):
            line = helper(ctx, resource, bucket, apply)
            if line:
                changes.append(line)
        return changes

    def _converge_tags(self, ctx, resource, bucket, apply):
        def put(missing):
            # PutBucketTagging replaces the whole set: keep the tags others added.
            have = {t["Key"]: t["Value"] for t in resource.raw.get("Tags", [])}
            tag_set = [{"Key": k, "Value": v} for k, v in {**have, **{t["Key"]: t["Value"] for t in missing}}.items()]
            ctx.client("s3").put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": tag_set})
            resource.raw["Tags"] = tag_set

        lines = ctx.converge_tags(resource.raw.get("Tags", []), self.name, apply, put)
        return lines[0] if lines else None

    def _converge_ownership(self, ctx, resource, bucket, apply):
        s3 = ctx.client("s3")
        rules = _setting(s3.get_bucket_ownership_controls, bucket, "OwnershipControlsNotFoundError",
                         "OwnershipControls", {"Rules": []})["Rules"]
        if [r.get("ObjectOwnership") for r in rules] == [OWNERSHIP]:
            return None
        if apply:
            s3.put_bucket_ownership_controls(
                Bucket=bucket, OwnershipControls={"Rules": [{"ObjectOwnership": OWNERSHIP}]})
        return f"set object ownership {OWNERSHIP} (ACLs off)"

    def _converge_encryption(self, ctx, resource, bucket, apply):
        s3 = ctx.client("s3")
        rules = _setting(s3.get_bucket_encryption, bucket, "ServerSideEncryptionConfigurationNotFoundError",
                         "ServerSideEncryptionConfiguration", {"Rules": []})["Rules"]
        # Any default encryption (SSE-S3 or a KMS key someone chose) is kept.
        if any(r.get("ApplyServerSideEncryptionByDefault", {}).get("SSEAlgorithm") for r in rules):
            return None
        if apply:
            s3.put_bucket_encryption(Bucket=bucket,
                                     ServerSideEncryptionConfiguration={"Rules": [ENCRYPTION_RULE]})
        return "set default encryption SSE-S3"

    def _converge_public_access_block(self, ctx, resource, bucket, apply):
        s3 = ctx.client("s3")
        have = _setting(s3.get_public_access_block, bucket, "NoSuchPublicAccessBlockConfiguration",
                        "PublicAccessBlockConfiguration", {})
        wanted = public_access_block(ctx)
        wrong = [k for k, v in wanted.items() if have.get(k) != v]
        if not wrong:
            return None
        if apply:
            s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration=dict(wanted))
        return f"set Block Public Access ({', '.join(f'{k}={wanted[k]}' for k in wrong)})"

    def _converge_policy(self, ctx, resource, bucket, apply):
        s3 = ctx.client("s3")
        want = bucket_policy(ctx, bucket)
        policy = _setting(s3.get_bucket_policy, bucket, "NoSuchBucketPolicy", "Policy", None)
        have = json.loads(policy) if policy is not None else None
        if have is not None and _canonical(have) == _canonical(want):
            return None
        if apply:
            self._put_policy(ctx, bucket, want)
        reader = "CloudFront reads images/" if ctx.config.cdn else "public read on images/ only"
        return (f"set the bucket policy ({reader}, TLS only)" if have is None
                else f"put back the bucket policy ({reader}, TLS only)")

    @staticmethod
    def _put_policy(ctx, bucket, policy):
        from botocore.exceptions import ClientError

        def put():
            ctx.client("s3").put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))

        try:
            put()
        except ClientError as e:
            if error_code(e) != "AccessDenied":
                raise
            account_blocks = account_blocks_public_policies(ctx)
            # Organizations often turn on Block Public Access for the whole account: then no
            # bucket may have a public policy, and AWS says only "Access Denied".
            if account_blocks:
                raise ConfigError(
                    f"account {ctx.account} blocks public bucket policies (S3 Block Public Access, account "
                    "level), so the product images cannot be made public",
                    hint="turn off BlockPublicPolicy and RestrictPublicBuckets in the account's S3 Block "
                         "Public Access settings (or ask the account's administrator), then run again") from None
            if account_blocks is None:
                raise  # cannot tell why: the refusal stands as it is
            # The account allows public policies, so this is the bucket's own Block Public
            # Access, set a moment ago and not yet in effect (it applies asynchronously).
            ctx.retry("public-access-block", put)

    # -- delete ------------------------------------------------------------------------------
    def delete(self, ctx, resource):
        empty_bucket(ctx, resource.id)
        ctx.client("s3").delete_bucket(Bucket=resource.id)

    def outputs(self, resource):
        return {"bucket": resource.attrs["bucket"], "images_base_url": resource.attrs["images_base_url"]}

    def describe(self, resource):
        return resource.attrs.get("images_base_url", "")


def empty_bucket(ctx, bucket: str) -> None:
    """Every version and delete marker, not only current objects: S3 refuses to delete a bucket
    that holds any (BucketNotEmpty), versioned or once versioned. ListObjectVersions pages hold
    up to 1000 entries, DeleteObjects takes up to 1000 keys."""
    ctx.activity(f"emptying bucket {bucket}")
    batch = []
    for page in ctx.client("s3").get_paginator("list_object_versions").paginate(Bucket=bucket):
        for item in page.get("Versions", []) + page.get("DeleteMarkers", []):
            batch.append({"Key": item["Key"], "VersionId": item["VersionId"]})
            if len(batch) == DELETE_BATCH:
                delete_objects(ctx, bucket, batch)
                batch = []
    if batch:
        delete_objects(ctx, bucket, batch)


def delete_objects(ctx, bucket: str, objects: list[dict]) -> None:
    """DeleteObjects answers 200 with per-key errors; any of them is a failure."""
    from provisioner.engine.errors import AwsFailure

    response = ctx.client("s3").delete_objects(Bucket=bucket, Delete={"Objects": objects, "Quiet": True})
    errors = response.get("Errors") or []
    if errors:
        first = errors[0]
        raise AwsFailure(f"could not delete {len(errors)} object(s) from {bucket}, e.g. {first.get('Key')}: "
                         f"{first.get('Code')} {first.get('Message', '')}".rstrip(),
                         code=first.get("Code"))


def _setting(get, bucket: str, unset_code: str, key: str, unset):
    """One bucket setting; S3 answers a setting never made with an error code of its own."""
    from botocore.exceptions import ClientError

    try:
        return get(Bucket=bucket)[key]
    except ClientError as e:
        if error_code(e) != unset_code:
            raise
        return unset


def account_blocks_public_policies(ctx) -> bool | None:
    """Whether the account's own Block Public Access forbids public bucket policies: True, False
    (no account-level setting, or one that allows them), or None when it cannot tell (no
    permission to read it: the original AccessDenied then stands)."""
    from botocore.exceptions import ClientError

    try:
        config = ctx.client("s3control").get_public_access_block(
            AccountId=ctx.account)["PublicAccessBlockConfiguration"]
    except ClientError as e:
        if error_code(e) == "NoSuchPublicAccessBlockConfiguration":
            return False
        return None
    return bool(config.get("BlockPublicPolicy"))


def tls_only_statement(arn: str) -> dict:
    return {"Sid": "DenyInsecureTransport", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
            "Resource": [arn, f"{arn}/*"], "Condition": {"Bool": {"aws:SecureTransport": "false"}}}


def _lifecycle_shape(rules: list[dict]) -> list[dict]:
    """What of a lifecycle configuration the tool sets, as a comparable value: S3 hands rules back
    with fields of its own (an empty Filter, defaulted ones) that are no difference."""
    keep = ("ID", "Status", "Transitions", "Expiration", "NoncurrentVersionTransitions",
            "NoncurrentVersionExpiration", "AbortIncompleteMultipartUpload")
    shaped = []
    for rule in rules:
        one = {k: rule[k] for k in keep if rule.get(k) not in (None, [], {})}
        for key in ("Transitions", "NoncurrentVersionTransitions"):
            if key in one:
                one[key] = [{k: v for k, v in t.items() if k in ("Days", "StorageClass", "NoncurrentDays")}
                            for t in one[key]]
        shaped.append(one)
    return sorted(shaped, key=lambda r: r.get("ID", ""))


class PrivateBucket(AssetsBucket):
    """A bucket of the stack that nothing reads publicly (the audit logs, the full-stack
    architecture's data): found, created and tagged as the assets bucket is, with Block Public
    Access fully on, a TLS-only policy, and its own versioning and lifecycle. A subclass names
    the bucket (`purpose`) and says what its policy allows and how its objects age."""

    kind = "private_bucket"   # not registered: each subclass is a kind of its own
    purpose: str            # the bucket is <stack>-<purpose>-<account>-<region>
    versioned: bool = True
    lifecycle_summary: str = ""

    def __init__(self, name: str, depends_on=()):
        # Only the key's ARN is needed, which exists once it is created.
        Step.__init__(self, name, depends_on=tuple(depends_on) + (created(KMS_KEY_STEP),))

    def bucket_name(self, ctx) -> str:
        name = f"{ctx.stack}-{self.purpose}-{ctx.account}-{ctx.region}"
        if len(name) > BUCKET_NAME_MAX:
            raise ConfigError(f"bucket name {name!r} is {len(name)} characters; S3 allows {BUCKET_NAME_MAX}",
                              hint="use a shorter --stack name")
        return name

    def policy_statements(self, ctx, bucket: str) -> list[dict]:
        """What the bucket policy allows besides denying plain HTTP."""
        return []

    def lifecycle_rules(self) -> list[dict]:
        return []

    def _resource(self, ctx, bucket, tags) -> Resource:
        return Resource(id=bucket, attrs={"bucket": bucket, "arn": bucket_arn(ctx, bucket)}, raw={"Tags": tags})

    def update(self, ctx, resource, apply):
        changes = []
        for helper in (self._converge_tags, self._converge_ownership, self._converge_encryption,
                       self._converge_public_access_block, self._converge_versioning, self._converge_lifecycle,
                       self._converge_policy):
            line = helper(ctx, resource, resource.id, apply)
            if line:
                changes.append(line)
        return changes

    def _converge_encryption(self, ctx, resource, bucket, apply):
        key = ctx.dep(KMS_KEY_STEP)
        key_arn = key.attrs["arn"] if key is not None else None
        s3 = ctx.client("s3")
        rules = _setting(s3.get_bucket_encryption, bucket, "ServerSideEncryptionConfigurationNotFoundError",
                         "ServerSideEncryptionConfiguration", {"Rules": []})["Rules"]
        default = rules[0] if len(rules) == 1 else {}
        by_default = default.get("ApplyServerSideEncryptionByDefault", {})
        if (by_default.get("SSEAlgorithm") == "aws:kms" and default.get("BucketKeyEnabled")
                and (key_arn is None or by_default.get("KMSMasterKeyID") == key_arn)):
            return None
        if apply and key_arn is not None:
            s3.put_bucket_encryption(Bucket=bucket,
                                     ServerSideEncryptionConfiguration={"Rules": [kms_encryption_rule(key_arn)]})
        return "set default encryption SSE-KMS with the stack's key and a bucket key"

    def _converge_public_access_block(self, ctx, resource, bucket, apply):
        s3 = ctx.client("s3")
        have = _setting(s3.get_public_access_block, bucket, "NoSuchPublicAccessBlockConfiguration",
                        "PublicAccessBlockConfiguration", {})
        if all(have.get(k) is True for k in PRIVATE_ACCESS_BLOCK):
            return None
        if apply:
            s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration=dict(PRIVATE_ACCESS_BLOCK))
        return "set Block Public Access (all four settings on)"

    def _converge_versioning(self, ctx, resource, bucket, apply):
        if not self.versioned:
            return None
        s3 = ctx.client("s3")
        if s3.get_bucket_versioning(Bucket=bucket).get("Status") == "Enabled":
            return None
        if apply:
            s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        return "turn versioning on"

    def _converge_lifecycle(self, ctx, resource, bucket, apply):
        want = self.lifecycle_rules()
        if not want:
            return None
        s3 = ctx.client("s3")
        have = _setting(s3.get_bucket_lifecycle_configuration, bucket, "NoSuchLifecycleConfiguration", "Rules", [])
        if _lifecycle_shape(have) == _lifecycle_shape(want):
            return None
        if apply:
            s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": want})
        return f"{'set' if not have else 'put back'} the lifecycle ({self.lifecycle_summary})"

    def _converge_policy(self, ctx, resource, bucket, apply):
        s3 = ctx.client("s3")
        want = {"Version": "2012-10-17",
                "Statement": self.policy_statements(ctx, bucket) + [tls_only_statement(bucket_arn(ctx, bucket))]}
        policy = _setting(s3.get_bucket_policy, bucket, "NoSuchBucketPolicy", "Policy", None)
        have = json.loads(policy) if policy is not None else None
        if have is not None and _canonical(have) == _canonical(want):
            return None
        if apply:
            s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(want))
        return "set the bucket policy" if have is None else "put back the bucket policy"

    def outputs(self, resource):
        return {}

    def describe(self, resource):
        return self.lifecycle_summary


def private_bucket_iam(arns: tuple[str, ...]) -> Iam:
    """What a PrivateBucket's find, create, converge and delete call, on its own ARNs."""
    settings = ("s3:PutBucketTagging", "s3:PutBucketPublicAccessBlock", "s3:PutBucketOwnershipControls",
                "s3:PutEncryptionConfiguration", "s3:PutBucketPolicy", "s3:PutBucketVersioning",
                "s3:PutLifecycleConfiguration")
    return Iam(create=(actions("s3:CreateBucket", "s3:TagResource", *settings, on=arns),),
               read=(actions("s3:ListBucket", "s3:GetBucketTagging", "s3:GetBucketPublicAccessBlock",
                             "s3:GetBucketPolicy", "s3:GetBucketOwnershipControls", "s3:GetEncryptionConfiguration",
                             "s3:GetBucketVersioning", "s3:GetLifecycleConfiguration", on=arns),
                     actions("s3:ListAllMyBuckets")),
               change=(actions(*settings, on=arns),),
               delete=(actions("s3:DeleteBucket", "s3:DeleteObject", "s3:ListBucket", "s3:ListBucketVersions",
                               "s3:DeleteObjectVersion", on=arns),))


def private_bucket_listing(kind: str, label: str, purposes: tuple[str, ...], price) -> Listing:
    """The inventory's view of buckets named <stack>-<purpose>-<account>-<region>: S3 is global,
    so buckets of other regions (and other purposes) are dropped by name before their tags are read."""
    def suffix(ctx):
        account = re.escape(ctx.account) if ctx.account else r"\d{12}"
        return rf"-(?:{'|'.join(map(re.escape, purposes))})-{account}-{re.escape(ctx.region)}"

    return Listing(kind, "s3", "list_buckets", "Buckets", "Name", label=label, created_field="CreationDate",
                   tags=ItemTags("get_bucket_tagging", "Bucket", "TagSet", untagged_codes=frozenset({"NoSuchTagSet"})),
                   candidate=lambda ctx, i: re.search(suffix(ctx) + "$", i["Name"]) is not None,
                   belongs=lambda ctx, stack, name: re.fullmatch(re.escape(stack) + suffix(ctx), name) is not None,
                   price=price)
