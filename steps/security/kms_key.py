"""The stack's customer-managed KMS key (--audit): symmetric, rotated yearly, named by the alias
`alias/provision/<stack>`, used by the instances' volumes, the log groups and the data tier.

The alias lives in this step, not a relationship step of its own: it has no tags, no price and
no state beyond the key it names, one per key; what matters is the order around the key (made
after it, deleted before its deletion is scheduled) and that one pointing at another key (a key
made by an earlier `up` and since scheduled for deletion) is moved, which `update` does.

KMS never deletes a key at once: `down` schedules the deletion with the shortest window AWS
allows (7 days) and removes the alias. A key pending deletion is no longer the stack's key: it is
not found, so `up` after `down` makes a new one rather than cancelling the deletion (`down` said
the key was going, and data encrypted under it went with the stack; cancelling is one command for
whoever needs the old key back, e.g. for a final snapshot: `aws kms cancel-key-deletion`).
"""

from __future__ import annotations

import json

from provisioner.account.pricing import HOURS_PER_MONTH, price_of
from provisioner.engine.context import Resource
from provisioner.engine.kinds import Iam, ItemTags, Listing, PriceKey, UsageNote, actions
from provisioner.engine.registry import Step, register
from provisioner.engine.retries import error_code, lookup

STEP = "kms-key"
# ScheduleKeyDeletion takes 7 to 30 days (ValidationException outside); the shortest stops the
# $1/month soonest and still leaves a week to cancel a mistaken `down`.
PENDING_WINDOW_DAYS = 7
# Not live for the stack: on their way out (deletion scheduled) or not usable at all.
GONE_STATES = frozenset({"PendingDeletion", "PendingReplicaDeletion"})
KEY_ARN = "arn:{partition}:kms:{region}:{account}:key/*"
ALIAS_ARN = "arn:{partition}:kms:{region}:{account}:alias/provision/{stack}"
# Auto Scaling launches instances with its service-linked role; a volume encrypted with a
# customer key it may not use fails every launch (Client.InvalidKMSKey.InvalidState), so the key
# policy names it. AWS creates the role with the account's first group; the key policy refuses a
# principal that does not exist yet (MalformedPolicyDocumentException), so `create` makes it first.
AUTOSCALING_ROLE = "AWSServiceRoleForAutoScaling"
AUTOSCALING_ROLE_PATH = "aws-service-role/autoscaling.amazonaws.com"


def alias_name(ctx) -> str:
    return f"alias/provision/{ctx.stack}"


def stack_key_arn(ctx) -> str | None:
    """The ARN of the stack's key for a step that encrypts with it (depending on
    `created(STEP)`), or None without --audit (AWS's own keys then) or before the key exists
    (`plan`)."""
    if not ctx.config.audit:
        return None
    key = ctx.dep(STEP)
    return key.attrs["arn"] if key is not None else None


def log_group_patterns(ctx) -> list[str]:
    """The stack's log groups that CloudWatch Logs may encrypt with the key: the WAF's
    (`aws-waf-logs-<stack>`) and every group under `/provision/<stack>/`."""
    from steps.storage.s3_bucket import partition

    base = f"arn:{partition(ctx.region)}:logs:{ctx.region}:{ctx.account}:log-group:"
    return [f"{base}aws-waf-logs-{ctx.stack}", f"{base}/provision/{ctx.stack}/*"]


def key_policy(ctx) -> dict:
    from steps.storage.s3_bucket import partition

    part = partition(ctx.region)
    account = f"arn:{part}:iam::{ctx.account}:root"
    autoscaling = f"arn:{part}:iam::{ctx.account}:role/{AUTOSCALING_ROLE_PATH}/{AUTOSCALING_ROLE}"
    use = ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey"]
    return {"Version": "2012-10-17", "Statement": [
        # Without it nobody could ever change or delete the key again: IAM policies of the account
        # apply to a key only through this statement.
        {"Sid": "AccountAdministers", "Effect": "Allow", "Principal": {"AWS": account},
         "Action": "kms:*", "Resource": "*"},
        # CloudWatch Logs encrypts as its own service principal, not as the caller, and only with
        # a key policy naming it; the encryption context condition keeps it to this stack's
        # groups (AWS's documented statement for log group encryption).
        {"Sid": "CloudWatchLogsEncryptsStackLogs", "Effect": "Allow",
         "Principal": {"Service": f"logs.{ctx.region}.amazonaws.com"},
         "Action": ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"],
         "Resource": "*",
         "Condition": {"ArnLike": {"kms:EncryptionContext:aws:logs:arn": log_group_patterns(ctx)}}},
        # The statements AWS documents for Auto Scaling and encrypted EBS volumes: use of the key,
        # and grants for the volumes EC2 attaches on the role's behalf.
        {"Sid": "AutoScalingUsesKeyForVolumes", "Effect": "Allow", "Principal": {"AWS": autoscaling},
         "Action": use, "Resource": "*"},
        {"Sid": "AutoScalingGrantsForVolumes", "Effect": "Allow", "Principal": {"AWS": autoscaling},
         "Action": "kms:CreateGrant", "Resource": "*",
         "Condition": {"Bool": {"kms:GrantIsForAWSResource": True}}},
        # A trail encrypting its log files (SSE-KMS) with the key: CloudTrail generates data keys
        # for this account's trails only.
        {"Sid": "CloudTrailEncryptsLogs", "Effect": "Allow", "Principal": {"Service": "cloudtrail.amazonaws.com"},
         "Action": ["kms:GenerateDataKey*", "kms:DescribeKey"], "Resource": "*",
         "Condition": {"StringLike": {"kms:EncryptionContext:aws:cloudtrail:arn":
                                      f"arn:{part}:cloudtrail:*:{ctx.account}:trail/*"}}},
    ]}


def _key_fetch(products, region, instance_types):
    return price_of(products("awskms", regionCode=region), "KMS-Keys")


KMS_KEY_MONTH = PriceKey("kms_key_month", "KMS customer-managed key", "month", _key_fetch,
                         # $1 per key-month in every commercial region, until `provision prices
                         # --refresh` reads the region's figure.
                         default=1.0)


def kms_requests(products, region):
    per_request = price_of(products("awskms", regionCode=region), "KMS-Requests")
    return None if per_request is None else f"${per_request * 10_000:g} per 10,000 requests (KMS)"


def key_charges(item, prices, region):
    return [("KMS key", 1, "key", prices["kms_key_month"] / HOURS_PER_MONTH)], []


def _customer_key_in_use(ctx, item) -> bool:
    """ListKeys names every key, AWS's own (aws/ebs, aws/rds...) with them, and says nothing of
    their state: only customer keys not pending deletion are the tool's and counted (one pending
    deletion is on its way out, and `up` never takes it back)."""
    described = lookup(ctx.client("kms").describe_key, KeyId=item["KeyId"], gone=frozenset({"NotFoundException"}))
    metadata = (described or {}).get("KeyMetadata", {})
    return metadata.get("KeyManager") == "CUSTOMER" and metadata.get("KeyState") not in GONE_STATES


@register
class KmsKey(Step):
    """Symmetric, yearly rotation, its alias; `down` schedules its deletion (7 days)."""

    kind = "kms_key"
    # KMS answers a key deleted for good with NotFoundException; one already pending deletion is
    # refused a second ScheduleKeyDeletion with KMSInvalidStateException, which `delete` reads
    # first (find does not return such a key).
    gone_codes = frozenset({"NotFoundException"})
    aws_type = "AWS::KMS::Key"
    listing = Listing("kms_key", "kms", "list_keys", "Keys", "KeyId", label="KMS keys",
                      tags=ItemTags("list_resource_tags", "KeyId", "Tags", key_field="TagKey", value_field="TagValue"),
                      candidate=_customer_key_in_use, price=key_charges, price_keys=(KMS_KEY_MONTH,),
                      usage_notes=(UsageNote("KMS requests", kms_requests),))
    iam = Iam(create=(actions("kms:CreateKey", "kms:TagResource", "kms:PutKeyPolicy"),
                      actions("kms:EnableKeyRotation", on=KEY_ARN),
                      # What the steps encrypting with the key need of the caller: RDS, EFS,
                      # ElastiCache, DynamoDB and Secrets Manager use it in the caller's name
                      # (grants for the service, data keys); declared once, here.
                      actions("kms:DescribeKey", "kms:CreateGrant", "kms:GenerateDataKey*", "kms:Decrypt",
                              "kms:Encrypt", on=KEY_ARN),
                      actions("kms:CreateAlias", on=(ALIAS_ARN, KEY_ARN)),
                      actions("iam:GetRole", "iam:CreateServiceLinkedRole",
                              on=f"arn:{{partition}}:iam::{{account}}:role/{AUTOSCALING_ROLE_PATH}/*",
                              condition={"StringEquals": {"iam:AWSServiceName": "autoscaling.amazonaws.com"}})),
              read=(actions("kms:ListKeys", "kms:ListAliases"),
                    actions("kms:DescribeKey", "kms:ListResourceTags", "kms:GetKeyRotationStatus", "kms:GetKeyPolicy",
                            on=KEY_ARN)),
              change=(actions("kms:TagResource", "kms:PutKeyPolicy", "kms:EnableKeyRotation", on=KEY_ARN),
                      actions("kms:UpdateAlias", "kms:CreateAlias", on=(ALIAS_ARN, KEY_ARN))),
              delete=(actions("kms:ScheduleKeyDeletion", on=KEY_ARN),
                      actions("kms:DeleteAlias", on=(ALIAS_ARN, KEY_ARN))))

    def __init__(self):
        super().__init__(STEP, depends_on=())

    @classmethod
    def instances(cls, config):
        return [cls()] if config.audit else []

    # -- find --------------------------------------------------------------------------------
    def find_all(self, ctx, known_id):
        kms = ctx.client("kms")
        if known_id:
            metadata = self._metadata(ctx, known_id)
            if metadata is not None:
                tags = self._tags(ctx, known_id)
                ctx.claim(self.name, known_id, tags, "KMS key")
                if metadata["KeyState"] not in GONE_STATES:
                    return [self._resource(ctx, metadata, tags)]
        # The alias names the key without a scan of every key in the region.
        metadata = self._metadata(ctx, alias_name(ctx))
        if metadata is not None and metadata["KeyState"] not in GONE_STATES:
            tags = self._tags(ctx, metadata["KeyId"])
            if ctx.owns(tags, self.name):
                return [self._resource(ctx, metadata, tags)]
        # A key made by a run that stopped before its alias: the stack's tags, key by key
        # (ListKeys has no filter and no tags).
        found = []
        for page in kms.get_paginator("list_keys").paginate():
            for key in page["Keys"]:
                metadata = self._metadata(ctx, key["KeyId"])
                if (metadata is None or metadata.get("KeyManager") != "CUSTOMER"
                        or metadata["KeyState"] in GONE_STATES):
                    continue
                tags = self._tags(ctx, key["KeyId"])
                if ctx.owns(tags, self.name):
                    found.append(self._resource(ctx, metadata, tags))
        return found

    @staticmethod
    def _metadata(ctx, key_id) -> dict | None:
        described = lookup(ctx.client("kms").describe_key, KeyId=key_id, gone=frozenset({"NotFoundException"}))
        return described["KeyMetadata"] if described else None

    @staticmethod
    def _tags(ctx, key_id) -> list[dict]:
        pages = ctx.client("kms").get_paginator("list_resource_tags").paginate(KeyId=key_id)
        return [{"Key": t["TagKey"], "Value": t["TagValue"]} for page in pages for t in page.get("Tags", [])]

    def _resource(self, ctx, metadata, tags) -> Resource:
        kms = ctx.client("kms")
        key_id = metadata["KeyId"]
        rotation = kms.get_key_rotation_status(KeyId=key_id).get("KeyRotationEnabled", False)
        policy = json.loads(kms.get_key_policy(KeyId=key_id, PolicyName="default")["Policy"])
        aliases = [a["AliasName"] for a in kms.list_aliases(KeyId=key_id).get("Aliases", [])]
        return Resource(id=key_id, attrs={"arn": metadata["Arn"], "alias": alias_name(ctx)},
                        raw={**metadata, "Tags": tags, "KeyRotationEnabled": rotation, "Policy": policy,
                             "Aliases": aliases})

    # -- create ------------------------------------------------------------------------------
    def create(self, ctx):
        self._autoscaling_role(ctx)
        kms = ctx.client("kms")
        tags = [{"TagKey": t["Key"], "TagValue": t["Value"]} for t in ctx.tags(self.name)]
        policy = key_policy(ctx)
        metadata = ctx.retry("kms-principal", kms.create_key, Policy=json.dumps(policy), Tags=tags,
                             KeySpec="SYMMETRIC_DEFAULT", KeyUsage="ENCRYPT_DECRYPT",
                             Description=f"provision stack {ctx.stack}: volumes, logs and data tier")["KeyMetadata"]
        key_id = metadata["KeyId"]
        kms.enable_key_rotation(KeyId=key_id)
        self._point_alias(ctx, key_id)
        return Resource(id=key_id, attrs={"arn": metadata["Arn"], "alias": alias_name(ctx)},
                        raw={**metadata, "Tags": ctx.tags(self.name), "KeyRotationEnabled": True, "Policy": policy,
                             "Aliases": [alias_name(ctx)]})

    @staticmethod
    def _autoscaling_role(ctx):
        from botocore.exceptions import ClientError

        iam = ctx.client("iam")
        if lookup(iam.get_role, RoleName=AUTOSCALING_ROLE, gone=frozenset({"NoSuchEntity"})) is not None:
            return
        try:
            iam.create_service_linked_role(AWSServiceName="autoscaling.amazonaws.com")
        except ClientError as e:
            # Made meanwhile by another stack's first group: it exists, which is all we need.
            if error_code(e) not in ("InvalidInput", "EntityAlreadyExists"):
                raise

    @staticmethod
    def _point_alias(ctx, key_id) -> str | None:
        """The alias on this key: made, or moved from the key it named (one pending deletion)."""
        kms = ctx.client("kms")
        name = alias_name(ctx)
        current = next((a for a in ctx.client("kms").get_paginator("list_aliases").paginate().build_full_result()
                        .get("Aliases", []) if a["AliasName"] == name), None)
        if current is None:
            kms.create_alias(AliasName=name, TargetKeyId=key_id)
            return f"alias {name} made"
        if current.get("TargetKeyId") != key_id:
            kms.update_alias(AliasName=name, TargetKeyId=key_id)
            return f"alias {name} moved from key {current.get('TargetKeyId')}"
        return None

    # -- converge ----------------------------------------------------------------------------
    def update(self, ctx, resource, apply):
        kms = ctx.client("kms")
        changes = ctx.converge_tags(resource.raw.get("Tags", []), self.name, apply, lambda missing: kms.tag_resource(
            KeyId=resource.id, Tags=[{"TagKey": t["Key"], "TagValue": t["Value"]} for t in missing]))
        if not resource.raw.get("KeyRotationEnabled"):
            if apply:
                kms.enable_key_rotation(KeyId=resource.id)
            changes.append("turn on yearly key rotation")
        want = key_policy(ctx)
        if _statements(resource.raw.get("Policy")) != _statements(want):
            if apply:
                kms.put_key_policy(KeyId=resource.id, PolicyName="default", Policy=json.dumps(want))
            changes.append("put back the key policy (account, CloudWatch Logs, Auto Scaling, CloudTrail)")
        if alias_name(ctx) not in resource.raw.get("Aliases", []):
            if apply:
                changes.append(self._point_alias(ctx, resource.id) or f"alias {alias_name(ctx)}")
            else:
                changes.append(f"point {alias_name(ctx)} at the key")
        return changes

    # -- delete ------------------------------------------------------------------------------
    def delete(self, ctx, resource):
        from botocore.exceptions import ClientError

        kms = ctx.client("kms")
        # Before the key: an alias outlives the key it names until removed, and would stop the
        # next `up` from making its own (AlreadyExistsException).
        for name in resource.raw.get("Aliases") or [alias_name(ctx)]:
            if name == alias_name(ctx):
                lookup(kms.delete_alias, AliasName=name, gone=frozenset({"NotFoundException"}))
        try:
            kms.schedule_key_deletion(KeyId=resource.id, PendingWindowInDays=PENDING_WINDOW_DAYS)
        except ClientError as e:
            # Already scheduled (a `down` that stopped after this call): nothing left to do.
            if error_code(e) != "KMSInvalidStateException" or self._state(ctx, resource.id) not in GONE_STATES:
                raise
        return (f"deletion scheduled in {PENDING_WINDOW_DAYS} days (KMS's shortest window); "
                f"`aws kms cancel-key-deletion --key-id {resource.id}` brings it back until then")

    def _state(self, ctx, key_id):
        metadata = self._metadata(ctx, key_id)
        return metadata["KeyState"] if metadata else None

    def outputs(self, resource):
        return {"kms_key_arn": resource.attrs["arn"], "kms_key_alias": resource.attrs["alias"]}

    def describe(self, resource):
        rotation = "rotated yearly" if resource.raw.get("KeyRotationEnabled") else "NOT rotated"
        return f"{resource.attrs.get('alias')} ({resource.id}), {rotation}; `down` schedules its deletion " \
               f"({PENDING_WINDOW_DAYS} days)"


def _statements(policy) -> list:
    """Statements as comparable values: KMS hands back the policy as written, but in any order."""
    if not isinstance(policy, dict):
        return []
    return sorted((json.dumps(s, sort_keys=True) for s in policy.get("Statement", [])))
