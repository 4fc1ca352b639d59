"""The CloudFront distribution in front of the stack (--cdn).

Two origins: the assets bucket, read through the Origin Access Control (the bucket stays
private), and the load balancer, over HTTPS only, with a secret header that the load balancer's
HTTPS listener requires: a request that goes to the load balancer directly gets 403, so neither
the cache nor the WAF can be bypassed.

The secret is made once, at creation, and AWS keeps it: in the distribution's origin (CloudFront
hands it back to GetDistribution, to the stack's own credentials only) and in the listener rules
that check it. It is never in the state file, the outputs, `status`, `plan` or a log line; a
later run reads it back from the distribution. Deriving it instead (from the stack's name, the
account, a hash) would make it guessable by anyone who knows those; storing it locally would
lose it with the state file and leak it with a copied state directory.

CloudFront is a global service: its API answers the same from every region, and the inventory
keeps a distribution in the scan of the region whose load balancer it serves.
"""

import secrets
import time

from provisioner.engine.context import Resource
from provisioner.engine.kinds import Free, Iam, ItemTags, Listing, UsageNote, actions
from provisioner.engine.registry import Step, created, register
from provisioner.engine.retries import error_code, lookup

# The header CloudFront adds to every request to the load balancer, and its secret's length
# (bytes of randomness; base64url, so no `*` or `?`, which a listener rule reads as wildcards).
ORIGIN_HEADER = "X-Origin-Verify"
SECRET_BYTES = 32
# AWS's managed policies (the same ids in every account).
CACHING_OPTIMIZED = "658327ea-f89d-4fab-a63d-7e88639e58f6"
CACHING_DISABLED = "4135ea2d-6df8-44a3-9df3-4b5a84be39ad"
ALL_VIEWER_EXCEPT_HOST_HEADER = "b689b0a8-53d0-40ab-baf2-68738e2966ac"
ASSETS_ORIGIN, BALANCER_ORIGIN = "assets-bucket", "load-balancer"
IMAGES_PATH, API_PATH = "/images/*", "/api/*"
# North America and Europe only: the cheapest price class, for a demo shop.
PRICE_CLASS = "PriceClass_100"
COMMENT = "provision stack {stack}"
DISTRIBUTION_ARN = "arn:{partition}:cloudfront::{account}:distribution/*"
ALL_METHODS = ["GET", "HEAD", "OPTIONS", "PUT", "PATCH", "POST", "DELETE"]


def _list(items: list) -> dict:
    return {"Quantity": len(items), "Items": items}


def origin_secret(distribution: Resource | None) -> str | None:
    """The secret header's value, from the live distribution (None before it exists)."""
    if distribution is None:
        return None
    return _secret_of(distribution.raw.get("DistributionConfig") or {})


def _secret_of(config: dict) -> str | None:
    for origin in (config.get("Origins") or {}).get("Items") or []:
        if origin.get("Id") == BALANCER_ORIGIN:
            for header in (origin.get("CustomHeaders") or {}).get("Items") or []:
                if header.get("HeaderName") == ORIGIN_HEADER:
                    return header.get("HeaderValue")
    return None


def _behavior(path, origin, cache_policy, *, methods=("GET", "HEAD"), origin_request_policy=None) -> dict:
    behavior = {"TargetOriginId": origin, "ViewerProtocolPolicy": "redirect-to-https", "Compress": True,
                "CachePolicyId": cache_policy,
                "AllowedMethods": {**_list(list(methods)), "CachedMethods": _list(["GET", "HEAD"])}}
    if path:
        behavior["PathPattern"] = path
    if origin_request_policy:
        behavior["OriginRequestPolicyId"] = origin_request_policy
    return behavior


def _served_region(item: dict) -> str | None:
    """The region of the load balancer a listed distribution serves ("<name>.<region>.elb.amazonaws.com")."""
    for origin in (item.get("Origins") or {}).get("Items") or []:
        parts = origin.get("DomainName", "").split(".")
        if origin.get("Id") == BALANCER_ORIGIN and len(parts) > 4 and parts[-3] == "elb":
            return parts[-4]
    return None


def cloudfront_traffic(products, region):
    from provisioner.account.pricing import price_of

    # CloudFront prices by the viewers' continent, not by region: "US-" is not a region prefix.
    per_gb = price_of(products("AmazonCloudFront", fromLocation="United States"), "US-DataTransfer-Out-Bytes")
    return None if per_gb is None else f"${per_gb:g} per GB out and per request (CloudFront)"


@register
class CloudFrontDistribution(Step):
    """Images cached from the bucket, /api/* and the pages from the load balancer, HTTPS for viewers."""

    kind = "cloudfront_distribution"
    gone_codes = frozenset({"NoSuchDistribution"})
    aws_type = "AWS::CloudFront::Distribution"
    # A distribution takes minutes to deploy, and as long again to disable before it can go.
    create_timeout = delete_timeout = 1800
    listing = Listing("cloudfront_distribution", "cloudfront", "list_distributions", "DistributionList.Items",
                      "ARN", label="CloudFront distributions",
                      tags=ItemTags("list_tags_for_resource", "Resource", "Tags.Items"),
                      candidate=lambda ctx, i: (i.get("Comment") or "").startswith("provision stack "),
                      served_region=_served_region,
                      detail=lambda i: {"domain_name": i.get("DomainName"), "enabled": i.get("Enabled")},
                      price=Free("bills by use: data out and requests (the usage-based notes)"),
                      usage_notes=(UsageNote("CloudFront", cloudfront_traffic),))
    iam = Iam(create=(actions("cloudfront:CreateDistribution", "cloudfront:TagResource", "cloudfront:GetDistribution",
                              on=DISTRIBUTION_ARN),),
              read=(actions("cloudfront:ListDistributions"),
                    actions("cloudfront:GetDistribution", "cloudfront:GetDistributionConfig",
                            "cloudfront:ListTagsForResource", on=DISTRIBUTION_ARN)),
              change=(actions("cloudfront:UpdateDistribution", "cloudfront:TagResource",
                              "cloudfront:GetDistributionConfig", on=DISTRIBUTION_ARN),),
              delete=(actions("cloudfront:UpdateDistribution", "cloudfront:GetDistributionConfig",
                              "cloudfront:GetDistribution", "cloudfront:DeleteDistribution", on=DISTRIBUTION_ARN),))

    def __init__(self):
        # Only the load balancer's DNS name: the distribution deploys while the load balancer is
        # still provisioning, and its minutes of disabling in `down` do not hold the load balancer
        # (a distribution may point at a deleted origin). CloudFront refuses to delete an Origin
        # Access Control in use, so that one is held. The bucket's name is the stack's; the
        # bucket depends on the distribution (its policy names its ARN), not the other way round.
        super().__init__("cloudfront-distribution",
                         depends_on=(created("load-balancer", held=False), created("origin-access-control")))

    @classmethod
    def instances(cls, config):
        return [cls()] if config.cdn else []

    # -- find --------------------------------------------------------------------------------
    def find_all(self, ctx, known_id):
        if known_id:
            found = self._get(ctx, known_id)
            if found is not None:
                ctx.claim(self.name, known_id, found.raw["Tags"], "distribution")
                return [found]
        cloudfront = ctx.client("cloudfront")
        mine = []
        for page in cloudfront.get_paginator("list_distributions").paginate():
            for item in (page.get("DistributionList") or {}).get("Items") or []:
                if item.get("Comment") != COMMENT.format(stack=ctx.stack):
                    continue
                tags = self._tags(ctx, item["ARN"])
                if ctx.owns(tags, self.name):
                    found = self._get(ctx, item["Id"], tags)
                    if found is not None:
                        mine.append(found)
        return mine

    @staticmethod
    def _tags(ctx, arn) -> list[dict]:
        answer = lookup(ctx.client("cloudfront").list_tags_for_resource, Resource=arn)
        return ((answer or {}).get("Tags") or {}).get("Items") or []

    def _get(self, ctx, distribution_id, tags=None) -> Resource | None:
        got = lookup(ctx.client("cloudfront").get_distribution, Id=distribution_id, gone=self.gone_codes)
        if got is None:
            return None
        distribution = got["Distribution"]
        if tags is None:
            tags = self._tags(ctx, distribution["ARN"])
        return self._resource(distribution, got.get("ETag"), tags)

    @staticmethod
    def _resource(distribution, etag, tags) -> Resource:
        domain = distribution["DomainName"]
        return Resource(id=distribution["Id"],
                        attrs={"arn": distribution["ARN"], "domain_name": domain,
                               "images_base_url": f"https://{domain}/images/"},
                        raw={**distribution, "ETag": etag, "Tags": tags})

    # -- what it must be ---------------------------------------------------------------------
    def wanted(self, ctx, secret: str | None) -> dict | None:
        """The DistributionConfig (None where a dependency does not exist yet: plan)."""
        from steps.storage.s3_bucket import bucket_name

        balancer, oac = ctx.dep("load-balancer"), ctx.dep("origin-access-control")
        if balancer is None or oac is None:
            return None
        bucket = bucket_name(ctx)
        assets = {"Id": ASSETS_ORIGIN, "DomainName": f"{bucket}.s3.{ctx.region}.amazonaws.com",
                  "S3OriginConfig": {"OriginAccessIdentity": ""}, "OriginAccessControlId": oac.id,
                  "CustomHeaders": _list([])}
        # HTTPS only: the secret header must never cross the internet in clear text.
        alb = {"Id": BALANCER_ORIGIN, "DomainName": balancer.attrs["dns_name"],
               "CustomOriginConfig": {"HTTPPort": 80, "HTTPSPort": 443, "OriginProtocolPolicy": "https-only",
                                      "OriginSslProtocols": _list(["TLSv1.2"]), "OriginReadTimeout": 30,
                                      "OriginKeepaliveTimeout": 5},
               "CustomHeaders": _list([{"HeaderName": ORIGIN_HEADER, "HeaderValue": secret or ""}])}
        return {
            "CallerReference": f"{ctx.stack}-{time.time_ns()}",
            "Comment": COMMENT.format(stack=ctx.stack),
            "Enabled": True,
            "Origins": _list([assets, alb]),
            # The pages: never cached (the storefront renders per request), everything the
            # viewer sent except Host (the load balancer's own name must reach it, for TLS).
            "DefaultCacheBehavior": _behavior(None, BALANCER_ORIGIN, CACHING_DISABLED, methods=ALL_METHODS,
                                              origin_request_policy=ALL_VIEWER_EXCEPT_HOST_HEADER),
            "CacheBehaviors": _list([
                _behavior(IMAGES_PATH, ASSETS_ORIGIN, CACHING_OPTIMIZED),
                _behavior(API_PATH, BALANCER_ORIGIN, CACHING_DISABLED, methods=ALL_METHODS,
                          origin_request_policy=ALL_VIEWER_EXCEPT_HOST_HEADER),
            ]),
            "PriceClass": PRICE_CLASS,
            "HttpVersion": "http2and3",
            "IsIPV6Enabled": True,
            "ViewerCertificate": {"CloudFrontDefaultCertificate": True, "MinimumProtocolVersion": "TLSv1.2_2021"},
        }

    # -- create ------------------------------------------------------------------------------
    def create(self, ctx):
        config = self.wanted(ctx, secrets.token_urlsafe(SECRET_BYTES))
        answer = ctx.client("cloudfront").create_distribution_with_tags(
            DistributionConfigWithTags={"DistributionConfig": config, "Tags": {"Items": ctx.tags(self.name)}})
        return self._resource(answer["Distribution"], answer.get("ETag"), ctx.tags(self.name))

    def ready(self, ctx, resource):
        """Deployed to the edge locations: only then does its address answer (minutes on AWS)."""
        if resource.raw.get("Status") != "Deployed":
            self._wait_deployed(ctx, resource.id, "distribution to deploy to CloudFront's edge (minutes on AWS)")
            resource.raw["Status"] = "Deployed"

    def _wait_deployed(self, ctx, distribution_id, what):
        ctx.wait("cloudfront", "distribution_deployed", Id=distribution_id, timeout=self.create_timeout, what=what)

    # -- converge ----------------------------------------------------------------------------
    def update(self, ctx, resource, apply):
        cloudfront = ctx.client("cloudfront")
        changes = ctx.converge_tags(resource.raw.get("Tags", []), self.name, apply, lambda missing: cloudfront.tag_resource(
            Resource=resource.attrs["arn"], Tags={"Items": missing}))
        live = resource.raw.get("DistributionConfig") or {}
        secret = _secret_of(live)
        wanted = self.wanted(ctx, secret or secrets.token_urlsafe(SECRET_BYTES))
        if wanted is None:
            return changes
        differ = _differences(live, wanted, has_secret=bool(secret))
        if differ and apply:
            def put(config, etag):
                merged = {**config, **{k: v for k, v in wanted.items() if k != "CallerReference"}}
                return cloudfront.update_distribution(Id=resource.id, IfMatch=etag, DistributionConfig=merged)

            answer = with_current_etag(ctx, resource.id, put)
            fresh = self._resource(answer["Distribution"], answer.get("ETag"), resource.raw.get("Tags", []))
            resource.attrs.update(fresh.attrs)
            resource.raw = fresh.raw
        return changes + differ

    # -- delete ------------------------------------------------------------------------------
    def delete(self, ctx, resource):
        """Disable, wait until that is deployed, delete with the ETag of that last state: CloudFront
        refuses to delete an enabled distribution, or one whose change is still in progress
        (DistributionNotDisabled), and any IfMatch but the current ETag (PreconditionFailed)."""
        cloudfront = ctx.client("cloudfront")
        got = lookup(cloudfront.get_distribution_config, Id=resource.id, gone=self.gone_codes)
        if got is None:
            return
        if got["DistributionConfig"].get("Enabled"):
            ctx.activity("disabling the distribution")
            with_current_etag(ctx, resource.id, lambda config, etag: cloudfront.update_distribution(
                Id=resource.id, IfMatch=etag, DistributionConfig={**config, "Enabled": False}))
        ctx.wait("cloudfront", "distribution_deployed", Id=resource.id, timeout=self.delete_timeout,
                 what="distribution to be disabled at every edge location (minutes on AWS)")
        with_current_etag(ctx, resource.id, lambda config, etag: cloudfront.delete_distribution(
            Id=resource.id, IfMatch=etag))

    def outputs(self, resource):
        domain = resource.attrs["domain_name"]
        return {"cdn_domain_name": domain, "cdn_distribution_id": resource.id, "url": f"https://{domain}"}

    def describe(self, resource):
        return f"{resource.raw.get('Status', '?')}, {resource.attrs.get('domain_name')}"


def with_current_etag(ctx, distribution_id, call):
    """call(config, etag) with the distribution's config and ETag as of now; once more with a
    fresh read if CloudFront says that ETag is no longer current (someone changed it meanwhile)."""
    from botocore.exceptions import ClientError

    cloudfront = ctx.client("cloudfront")
    for attempt in (1, 2):
        got = cloudfront.get_distribution_config(Id=distribution_id)
        try:
            return call(got["DistributionConfig"], got["ETag"])
        except ClientError as e:
            if error_code(e) not in ("PreconditionFailed", "InvalidIfMatchVersion") or attempt == 2:
                raise
            ctx.activity("the distribution changed since it was read (stale ETag); reading it again")


def _behavior_value(behavior: dict) -> tuple:
    return (behavior.get("PathPattern"), behavior.get("TargetOriginId"), behavior.get("ViewerProtocolPolicy"),
            behavior.get("CachePolicyId"), behavior.get("OriginRequestPolicyId") or None,
            tuple(sorted((behavior.get("AllowedMethods") or {}).get("Items") or [])))


def _origin_value(origin: dict) -> tuple:
    custom = origin.get("CustomOriginConfig") or {}
    return (origin.get("Id"), origin.get("DomainName"), origin.get("OriginAccessControlId") or None,
            custom.get("OriginProtocolPolicy"))


def _differences(live: dict, wanted: dict, has_secret: bool) -> list[str]:
    """One line per difference the tool corrects; never the secret itself."""
    out = []
    if not live.get("Enabled"):
        out.append("enable the distribution")
    if sorted(map(_origin_value, (live.get("Origins") or {}).get("Items") or [])) != \
            sorted(map(_origin_value, wanted["Origins"]["Items"])):
        out.append("set the origins (the assets bucket through its Origin Access Control, the load balancer over "
                   "HTTPS)")
    if not has_secret:
        out.append(f"set a new secret {ORIGIN_HEADER} header on the load balancer's origin")
    behaviors = [live.get("DefaultCacheBehavior") or {}] + ((live.get("CacheBehaviors") or {}).get("Items") or [])
    want = [wanted["DefaultCacheBehavior"]] + wanted["CacheBehaviors"]["Items"]
    if sorted(map(_behavior_value, behaviors), key=repr) != sorted(map(_behavior_value, want), key=repr):
        out.append(f"set the cache behaviours ({IMAGES_PATH} cached, {API_PATH} and the rest not)")
    if live.get("PriceClass") != wanted["PriceClass"]:
        out.append(f"set price class {wanted['PriceClass']} (was {live.get('PriceClass')})")
    return out
