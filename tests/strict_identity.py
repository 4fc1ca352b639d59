"""Strict rules for IAM (role, instance profile), ACM and S3: see strict.py.

A mixin of StrictAws: `strict_setup_identity` sets up its bookkeeping, `strict_rules_identity` returns
{"service.Operation": rule(body) -> refusal or None}, `strict_after_identity` returns
{"service.Operation": hook(parsed)}. Rules run under the StrictAws lock.

What moto already refuses as AWS does (checked on moto 5.2): DeleteRole with attached or inline
policies or while in an instance profile, DeleteInstanceProfile while it holds a role (all
DeleteConflict), DeleteBucket while the bucket holds objects, versions or delete markers
(BucketNotEmpty). The IAM ones are repeated here so that they are recorded as ORDER refusals,
which tests assert never happen. moto accepts a public bucket policy whatever the bucket's Block
Public Access says; AWS refuses it (AccessDenied), and new buckets block public policies by
default since April 2023.
"""

from __future__ import annotations

from moto.core import DEFAULT_ACCOUNT_ID

from strict_base import refuse


def _is_public(statement: dict) -> bool:
    principal = statement.get("Principal")
    if isinstance(principal, dict):
        principal = principal.get("AWS")
    principals = principal if isinstance(principal, list) else [principal]
    return statement.get("Effect") == "Allow" and "*" in principals


def _buckets_named(policy: dict) -> set[str]:
    """A bucket policy's statements name their bucket in every Resource ARN."""
    names = set()
    for statement in policy.get("Statement", []):
        resources = statement.get("Resource", [])
        for arn in resources if isinstance(resources, list) else [resources]:
            if isinstance(arn, str) and ":s3:::" in arn:
                names.add(arn.split(":s3:::", 1)[1].split("/", 1)[0])
    return names


def _on(value) -> bool:
    return str(value).lower() == "true"


class IdentityRules:
    def strict_setup_identity(self):
        pass

    @property
    def _identity_iam(self):
        from moto.iam.models import iam_backends

        return iam_backends[DEFAULT_ACCOUNT_ID]["global"]

    @property
    def _identity_s3(self):
        from moto.s3.models import s3_backends

        return s3_backends[DEFAULT_ACCOUNT_ID]["aws"]

    def strict_rules_identity(self):
        return {
            "iam.DeleteRole": self._iam_delete_role,
            "iam.DeleteInstanceProfile": self._iam_delete_instance_profile,
            "s3.PutBucketPolicy": self._s3_put_bucket_policy,
        }

    def strict_after_identity(self):
        return {}

    # -- IAM ------------------------------------------------------------------------------------
    def _iam_profiles_holding(self, role_name):
        return [p.name for p in list(self._identity_iam.instance_profiles.values())
                if any(r.name == role_name for r in p.roles)]

    def _iam_delete_role(self, body):
        name = body.get("RoleName")
        role = next((r for r in list(self._identity_iam.roles.values()) if r.name == name), None)
        if role is None:
            return None
        if role.managed_policies:
            return refuse("DeleteConflict", "Cannot delete entity, must detach all policies first.", status=409)
        if role.policies:
            return refuse("DeleteConflict", "Cannot delete entity, must delete policies first.", status=409)
        if self._iam_profiles_holding(name):
            return refuse("DeleteConflict", "Cannot delete entity, must remove roles from instance profile first.",
                          status=409)
        return None

    def _iam_delete_instance_profile(self, body):
        name = body.get("InstanceProfileName")
        for profile in list(self._identity_iam.instance_profiles.values()):
            if profile.name == name and profile.roles:
                return refuse("DeleteConflict", "Cannot delete entity, must remove roles from instance profile first.",
                              status=409)
        return None

    # -- S3 -------------------------------------------------------------------------------------
    def _s3_put_bucket_policy(self, body):
        # The body is the policy document (JSON, decoded by the guard); the bucket is in the URL,
        # which rules do not see, so it is read from the statements' Resource ARNs.
        if not any(_is_public(s) for s in body.get("Statement", [])):
            return None
        for name in _buckets_named(body):
            bucket = self._identity_s3.buckets.get(name)
            if bucket is None:
                continue
            block = bucket.public_access_block
            # No configuration yet is a new bucket's: AWS blocks public policies by default.
            if block is None or _on(block.block_public_policy):
                return refuse("AccessDenied",
                              "User is not authorized to perform: s3:PutBucketPolicy on resource: "
                              f'"arn:aws:s3:::{name}" because public policies are blocked by the '
                              "BlockPublicPolicy block public access setting.", status=403)
        return None
