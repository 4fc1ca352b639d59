"""The stack's CloudTrail trail (--audit): management events of every region to the audit bucket."""

from provisioner.engine.context import Resource
from provisioner.engine.errors import ConfigError
from provisioner.engine.kinds import BatchTags, Iam, Listing, PriceKey, actions
from provisioner.engine.registry import Step, created, register
from provisioner.engine.retries import error_code, lookup

from steps.security.audit_bucket import trail_arn, trail_name

TRAIL_ARN = "arn:{partition}:cloudtrail:{region}:{account}:trail/{stack}-trail"
# CloudTrail's ListTags takes at most 20 trail ARNs.
TRAIL_TAGS = BatchTags("list_tags", "ResourceIdList", "ResourceTagList", "ResourceId", 20, tags_key="TagsList")
# The first copy of an account's management events is free; each further trail recording them
# (an organization trail already does, often) bills $2.00 per 100,000 events (us-east-1). A
# stack's own activity is a few thousand events a month: about $0.05 a month as a second copy.
EVENTS_PER_MONTH = 2500


def _events(products, region, instance_types):
    from provisioner.account.pricing import price_of

    return price_of(products("AWSCloudTrail", regionCode=region, productFamily="Management Tools - AWS CloudTrail "
                             "Management Events"), "PaidEventsRecorded")


MANAGEMENT_EVENTS = PriceKey("cloudtrail_management_event", "CloudTrail management events (a second copy)",
                             "event", _events, default=0.00002)


def trail_charges(item, prices, region):
    from provisioner.account.pricing import HOURS_PER_MONTH

    rate = prices["cloudtrail_management_event"]
    # Priced as a second copy (the worst case): the first copy is free, and whether another trail
    # of the account (an organization's) records them first cannot be read from here.
    return ([(f"CloudTrail management events if a second copy (${rate * 100000:g}/100,000, ~{EVENTS_PER_MONTH}/month)",
              EVENTS_PER_MONTH, "events/month", rate / HOURS_PER_MONTH)],
            [])


@register
class CloudTrailTrail(Step):
    """Records the account's management events (API calls) to the audit bucket, with log file
    validation (a digest file per hour proves the logs were not altered).

    Multi-region: a management event made in a region the stack does not use (a key pair created
    in another region, an instance launched far away) is exactly what an audit trail is for, and
    Security Hub's CloudTrail.1 asks for a multi-region trail. It costs nothing more: the first
    copy of management events is free in every region."""

    kind = "cloudtrail_trail"
    gone_codes = frozenset({"TrailNotFoundException"})
    aws_type = "AWS::CloudTrail::Trail"
    # A multi-region trail is listed in every region: counted in its home region only.
    listing = Listing("cloudtrail_trail", "cloudtrail", "list_trails", "Trails", "TrailARN", label="CloudTrail trails",
                      tags=TRAIL_TAGS, candidate=lambda ctx, i: i.get("HomeRegion") == ctx.region,
                      price=trail_charges, price_keys=(MANAGEMENT_EVENTS,))
    iam = Iam(create=(actions("cloudtrail:CreateTrail", "cloudtrail:AddTags", "cloudtrail:StartLogging", on=TRAIL_ARN),),
              read=(actions("cloudtrail:GetTrail", "cloudtrail:GetTrailStatus", "cloudtrail:ListTags", on=TRAIL_ARN),
                    actions("cloudtrail:ListTrails")),
              change=(actions("cloudtrail:UpdateTrail", "cloudtrail:StartLogging", "cloudtrail:AddTags", on=TRAIL_ARN),),
              delete=(actions("cloudtrail:DeleteTrail", on=TRAIL_ARN),))

    def __init__(self):
        # CreateTrail is refused (InsufficientS3BucketPolicyException) until the bucket's policy
        # lets CloudTrail write: the bucket step puts it there before it counts as made.
        # Its log files are encrypted with the stack's key (SSE-KMS; Security Hub's CloudTrail.2),
        # whose policy lets CloudTrail make data keys for this account's trails.
        super().__init__("trail", depends_on=("audit-bucket", created("kms-key")))

    @classmethod
    def instances(cls, config):
        return [cls()] if config.audit else []

    def _read(self, ctx, name):
        ct = ctx.client("cloudtrail")
        trail = lookup(ct.get_trail, Name=name, gone=self.gone_codes)
        if trail is None:
            return None, []
        trail = trail["Trail"]
        tags = ct.list_tags(ResourceIdList=[trail["TrailARN"]])["ResourceTagList"]
        return trail, (tags[0].get("TagsList", []) if tags else [])

    def find_all(self, ctx, known_id):
        for name in dict.fromkeys(n for n in (known_id, trail_name(ctx)) if n):
            trail, tags = self._read(ctx, name)
            if trail is None:
                continue
            if name == known_id:
                ctx.claim(self.name, name, tags, "trail")
            if ctx.is_ours(tags, self.name):
                status = ctx.client("cloudtrail").get_trail_status(Name=trail["Name"])
                return [Resource(id=trail["Name"], attrs={"name": trail["Name"], "arn": trail["TrailARN"]},
                                 raw={**trail, "IsLogging": status.get("IsLogging"), "Tags": tags})]
        return []

    def check_name(self, ctx, known_id):
        trail, tags = self._read(ctx, trail_name(ctx))
        if trail is not None and not ctx.is_ours(tags, self.name):
            raise ConfigError(f"a CloudTrail trail named {trail_name(ctx)} exists and is not this stack's",
                              hint="delete it or use another --stack name")

    def _settings(self, ctx):
        from steps.security.kms_key import stack_key_arn

        key = stack_key_arn(ctx)
        return {"S3BucketName": ctx.dep("audit-bucket").id, "IsMultiRegionTrail": True,
                "IncludeGlobalServiceEvents": True, "EnableLogFileValidation": True, **({"KmsKeyId": key} if key else {})}

    def create(self, ctx):
        ct = ctx.client("cloudtrail")
        trail = ct.create_trail(Name=trail_name(ctx), TagsList=ctx.tags(self.name), **self._settings(ctx))
        # A trail is made stopped: without StartLogging it records nothing.
        ct.start_logging(Name=trail["Name"])
        return Resource(id=trail["Name"], attrs={"name": trail["Name"], "arn": trail["TrailARN"]},
                        raw={**trail, "IsLogging": True, "Tags": ctx.tags(self.name)})

    def update(self, ctx, resource, apply):
        ct = ctx.client("cloudtrail")
        changes = ctx.converge_tags(resource.raw.get("Tags", []), self.name, apply, lambda missing: ct.add_tags(
            ResourceId=resource.attrs["arn"], TagsList=missing))
        want = self._settings(ctx) if ctx.dep("audit-bucket") is not None else {}
        wrong = {k: v for k, v in want.items() if resource.raw.get({"EnableLogFileValidation": "LogFileValidationEnabled"}
                                                                  .get(k, k)) != v}
        if wrong:
            if apply:
                ct.update_trail(Name=resource.id, **want)
            changes.append("put back " + ", ".join(f"{k}={v}" for k, v in wrong.items()))
        if not resource.raw.get("IsLogging"):
            if apply:
                ct.start_logging(Name=resource.id)
            changes.append("start logging (it was stopped)")
        return changes

    def delete(self, ctx, resource):
        ctx.client("cloudtrail").delete_trail(Name=resource.id)

    def outputs(self, resource):
        return {"trail": resource.id}

    def describe(self, resource):
        return ("logging" if resource.raw.get("IsLogging") else "NOT logging") + ", every region, validated"
