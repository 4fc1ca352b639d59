"""Strict rules for IAM (role, instance profile), ACM and S3: see strict.py.

A mixin of StrictAws: `strict_setup_identity` sets up its bookkeeping, `strict_rules_identity` returns
{"service.Operation": rule(body) -> refusal or None}, `strict_after_identity` returns
{"service.Operation": hook(parsed)}. Rules run under the StrictAws lock.
"""

from __future__ import annotations


class IdentityRules:
    def strict_setup_identity(self):
        pass

    def strict_rules_identity(self):
        return {}

    def strict_after_identity(self):
        return {}
