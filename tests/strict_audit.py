"""Strict rules for the audit tier (--audit): see strict.py.

A mixin of StrictAws. What moto accepts and AWS refuses, added here:
- CloudTrail: CreateTrail to a bucket whose policy does not let cloudtrail.amazonaws.com write
  for this trail (InsufficientS3BucketPolicyException; moto checks only that the bucket exists);
- VPC flow logs: a delivery role made moments ago is not yet assumable, and CreateFlowLogs
  answers 200 with an Unsuccessful item "Unable to assume given IAM role" (moto: accepted at once).
"""

from __future__ import annotations

import json
import time

from moto.core import DEFAULT_ACCOUNT_ID

from strict_base import ORDER, refuse


class AuditRules:
    def strict_setup_audit(self):
        # role name -> when it was created (IAM propagation to the flow logs service)
        self.roles_created: dict[str, float] = {}
        self.flow_log_role_refusals = 0
        self.roles_refused: set[str] = set()

    def strict_rules_audit(self):
        return {"cloudtrail.CreateTrail": self._create_trail}

    def strict_after_audit(self):
        return {"iam.CreateRole": self._after_create_role}

    def strict_answers_audit(self):
        return {"ec2.CreateFlowLogs": self._create_flow_logs}

    def _after_create_role(self, parsed):
        role = parsed.get("Role") or {}
        if role.get("RoleName"):
            self.roles_created[role["Arn"]] = time.monotonic()

    def _create_flow_logs(self, body):
        arn = body.get("DeliverLogsPermissionArn")
        made = self.roles_created.get(arn)
        # moto is slow enough that a wall-clock window can pass before the first call: the first
        # call naming a role made in this test is always refused, then the window applies.
        first = arn in self.roles_created and arn not in self.roles_refused
        if made is None or (not first and time.monotonic() >= made + self.delays.flow_log_role_propagation):
            return None
        self.roles_refused.add(arn)
        self.flow_log_role_refusals += 1
        resource = body.get("ResourceId.1") or ""
        from strict_base import _Http

        return _Http(200), {"FlowLogIds": [], "Unsuccessful": [{"ResourceId": resource, "Error": {
            "Code": "InvalidParameter", "Message": f"Unable to assume given IAM role: '{arn}'"}}],
            "ResponseMetadata": {"HTTPStatusCode": 200}}

    def _create_trail(self, body):
        from moto.s3.models import s3_backends

        bucket = s3_backends[DEFAULT_ACCOUNT_ID]["aws"].buckets.get(body.get("S3BucketName"))
        if bucket is None:
            return None  # moto's own S3BucketDoesNotExistException
        trail_arn = f"arn:aws:cloudtrail:{self.region}:{DEFAULT_ACCOUNT_ID}:trail/{body.get('Name')}"
        policy = json.loads(bucket.policy) if bucket.policy else {"Statement": []}
        allowed = set()
        for statement in policy.get("Statement", []):
            principal = statement.get("Principal") or {}
            services = principal.get("Service") if isinstance(principal, dict) else None
            services = [services] if isinstance(services, str) else services or []
            if statement.get("Effect") != "Allow" or "cloudtrail.amazonaws.com" not in services:
                continue
            source = (statement.get("Condition") or {}).get("StringEquals", {}).get("aws:SourceArn")
            if source not in (None, trail_arn):
                continue
            actions = statement.get("Action")
            allowed.update([actions] if isinstance(actions, str) else actions or [])
        if {"s3:GetBucketAcl", "s3:PutObject"} <= allowed:
            return None
        return refuse("InsufficientS3BucketPolicyException",
                      f"Incorrect S3 bucket policy is detected for bucket: {body.get('S3BucketName')}", ORDER)
