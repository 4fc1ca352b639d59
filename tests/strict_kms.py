"""Strict rules for KMS (--audit): see strict.py.

A mixin of StrictAws. What moto accepts and AWS refuses, added here:
- ScheduleKeyDeletion with a window outside 7 to 30 days (ValidationException);
- any use of a key that is not Enabled (pending deletion, disabled): ScheduleKeyDeletion again,
  EnableKeyRotation, CreateAlias/UpdateAlias onto it (KMSInvalidStateException), and the services
  that encrypt with it: a log group (CloudWatch Logs: InvalidParameterException), a database
  (RDS: KMSKeyNotAccessibleFault), a file system, a cache, a secret;
- CreateKey/PutKeyPolicy naming an IAM role that does not exist (MalformedPolicyDocumentException:
  the Auto Scaling service-linked role before the account's first group).
"""

from __future__ import annotations

import json

from moto.core import DEFAULT_ACCOUNT_ID

from strict_base import ORDER, refuse


class KmsRules:
    def strict_rules_kms(self):
        return {"kms.ScheduleKeyDeletion": self._schedule_key_deletion,
                "kms.EnableKeyRotation": self._key_in_use("KeyId"),
                "kms.CreateAlias": self._key_in_use("TargetKeyId"),
                "kms.UpdateAlias": self._key_in_use("TargetKeyId"),
                "kms.CreateKey": self._policy_principals,
                "kms.PutKeyPolicy": self._policy_principals,
                "logs.CreateLogGroup": self._encrypts_with("kmsKeyId", "InvalidParameterException"),
                "rds.CreateDBInstance": self._encrypts_with("KmsKeyId", "KMSKeyNotAccessibleFault"),
                "elasticache.CreateReplicationGroup": self._encrypts_with("KmsKeyId", "InvalidParameterValue"),
                "efs.CreateFileSystem": self._encrypts_with("KmsKeyId", "BadRequest"),
                "secretsmanager.CreateSecret": self._encrypts_with("KmsKeyId", "KMSInvalidStateException"),
                "dynamodb.CreateTable": self._table_key}

    @property
    def kms(self):
        from moto.kms.models import kms_backends

        return kms_backends[DEFAULT_ACCOUNT_ID][self.region]

    def _key(self, key_id: str | None):
        if not key_id:
            return None
        key_id = key_id.split("/")[-1] if key_id.startswith("arn:") and ":key/" in key_id else key_id
        try:
            return self.kms.describe_key(key_id)
        except Exception:  # an unknown key: moto's own answer is AWS's (NotFoundException)
            return None

    def _not_enabled(self, key_id):
        key = self._key(key_id)
        return key is not None and key.key_state != "Enabled", key

    def _schedule_key_deletion(self, body):
        window = body.get("PendingWindowInDays", 30)
        if not 7 <= int(window) <= 30:
            return refuse("ValidationException", f"1 validation error detected: Value '{window}' at "
                          "'pendingWindowInDays' failed to satisfy constraint: Member must have value less "
                          "than or equal to 30 and greater than or equal to 7", ORDER)
        return self._key_in_use("KeyId")(body)

    def _key_in_use(self, field):
        def rule(body):
            bad, key = self._not_enabled(body.get(field))
            if bad:
                return refuse("KMSInvalidStateException", f"{key.arn} is {key.key_state}", ORDER)
            return None
        return rule

    def _encrypts_with(self, field, code):
        def rule(body):
            bad, key = self._not_enabled(body.get(field))
            if bad:
                return refuse(code, f"The KMS key {key.arn} is {key.key_state} and cannot be used", ORDER)
            return None
        return rule

    def _table_key(self, body):
        return self._encrypts_with("KMSMasterKeyId", "ValidationException")(body.get("SSESpecification") or {})

    def _policy_principals(self, body):
        from moto.iam.models import iam_backends

        iam = iam_backends[DEFAULT_ACCOUNT_ID]["global"]
        roles = {role.arn for role in iam.roles.values()}
        policy = json.loads(body.get("Policy") or "{}")
        for statement in policy.get("Statement", []):
            principals = (statement.get("Principal") or {})
            named = principals.get("AWS", []) if isinstance(principals, dict) else []
            for arn in [named] if isinstance(named, str) else named:
                if ":role/" in arn and arn not in roles:
                    return refuse("MalformedPolicyDocumentException",
                                  "Policy contains a statement with one or more invalid principals.", ORDER)
        return None
