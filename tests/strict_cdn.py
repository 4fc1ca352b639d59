"""Strict rules for the edge's WAF and CloudFront: see strict.py.

A mixin of StrictAws, like strict_edge.py. What moto accepts and AWS refuses, added here:
- WAF: deleting a web ACL still associated with a resource (WAFAssociatedItemException);
- CloudFront: deleting a distribution that is enabled, or disabled but not yet deployed
  (DistributionNotDisabled); an IfMatch that is not the distribution's current ETag
  (PreconditionFailed; moto takes any); a distribution is `InProgress` for a while after each
  create and update (moto: `Deployed` at once), so the wait for it is met.
"""

from __future__ import annotations

import time

from moto.core import DEFAULT_ACCOUNT_ID

from strict_base import ORDER, refuse


class CdnRules:
    def strict_setup_cdn(self):
        # distribution id -> when its last create or update finishes deploying
        self.distribution_deploying: dict[str, float] = {}

    def strict_rules_cdn(self):
        return {"wafv2.DeleteWebACL": self._delete_web_acl}

    def strict_requests_cdn(self):
        return {"cloudfront.UpdateDistribution": self._update_distribution,
                "cloudfront.DeleteDistribution": self._delete_distribution}

    def strict_after_cdn(self):
        return {"cloudfront.CreateDistributionWithTags": self._after_distribution_change,
                "cloudfront.CreateDistribution": self._after_distribution_change,
                "cloudfront.UpdateDistribution": self._after_update_distribution,
                "cloudfront.GetDistribution": self._after_get_distribution,
                "cloudfront.ListDistributions": self._after_list_distributions}

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

    # -- CloudFront -------------------------------------------------------------------------
    @property
    def cloudfront(self):
        from moto.cloudfront.models import cloudfront_backends

        return cloudfront_backends[DEFAULT_ACCOUNT_ID]["global"]

    def _deploying(self, distribution_id: str) -> bool:
        return time.monotonic() < self.distribution_deploying.get(distribution_id, 0)

    def _start_deploying(self, distribution_id: str) -> None:
        self.distribution_deploying[distribution_id] = time.monotonic() + self.delays.distribution_deploy

    def _current_etag(self, distribution_id):
        distribution = self.cloudfront.distributions.get(distribution_id)
        return None if distribution is None else distribution.etag

    def _if_match(self, body_or_params, distribution_id):
        etag = self._current_etag(distribution_id)
        given = body_or_params.get("IfMatch")
        if etag is not None and given != etag:
            return refuse("PreconditionFailed",
                          "The precondition given in one or more of the request-header fields evaluated to false.",
                          ORDER, status=412)
        return None

    def _update_distribution(self, params):
        return self._if_match(params, params.get("Id"))

    def _delete_distribution(self, params):
        distribution_id = params.get("Id")
        distribution = self.cloudfront.distributions.get(distribution_id)
        if distribution is None:
            return None
        if str(getattr(distribution.distribution_config, "Enabled", "true")).lower() == "true" or self._deploying(distribution_id):
            return refuse("DistributionNotDisabled",
                          "The distribution you are trying to delete has not been disabled.", ORDER, status=409)
        return self._if_match(params, distribution_id)

    def _after_distribution_change(self, parsed):
        distribution = parsed.get("Distribution") or {}
        if distribution.get("Id"):
            self._start_deploying(distribution["Id"])
            distribution["Status"] = "InProgress"

    def _after_update_distribution(self, parsed):
        """AWS gives each version of a distribution's config its own ETag; moto keeps the first."""
        from moto.cloudfront.models import random_id

        distribution = self.cloudfront.distributions.get((parsed.get("Distribution") or {}).get("Id"))
        if distribution is not None:
            distribution.etag = random_id()
            parsed["ETag"] = distribution.etag
        self._after_distribution_change(parsed)

    def _after_get_distribution(self, parsed):
        distribution = parsed.get("Distribution") or {}
        if distribution.get("Id") and self._deploying(distribution["Id"]):
            distribution["Status"] = "InProgress"

    def _after_list_distributions(self, parsed):
        for item in (parsed.get("DistributionList") or {}).get("Items") or []:
            if self._deploying(item["Id"]):
                item["Status"] = "InProgress"
