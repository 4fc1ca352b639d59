"""Strict rules for the edge's WAF: see strict.py.

A mixin of StrictAws, like strict_edge.py. What moto accepts and AWS refuses, added here:
- WAF: deleting a web ACL still associated with a resource (WAFAssociatedItemException).
"""

from __future__ import annotations

from moto.core import DEFAULT_ACCOUNT_ID

from strict_base import ORDER, refuse


class CdnRules:
    def strict_rules_cdn(self):
        return {"wafv2.DeleteWebACL": self._delete_web_acl}

    # -- WAF --------------------------------------------------------------------------------
    def _wafv2(self, scope: str):
        from moto.wafv2.models import wafv2_backends

        return wafv2_backends[DEFAULT_ACCOUNT_ID]["global" if scope == "CLOUDFRONT" else self.region]

    def _delete_web_acl(self, body):
        backend = self._wafv2(body.get("Scope", "REGIONAL"))
        for acl in list(backend.wacls.values()):
            if acl.id == body.get("Id") and acl.associated_resources:
                return refuse("WAFAssociatedItemException",
                              "AWS WAF couldn't perform the operation because your resource is being used by another "
                              f"resource or it's associated with another resource ({acl.associated_resources[0]})",
                              ORDER)
        return None
