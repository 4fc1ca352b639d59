"""GuardDuty (--audit): the region's one detector, the account's if it has one, else the stack's."""

from provisioner.engine.context import Resource
from provisioner.engine.kinds import Free, Iam, ItemTags, Listing, actions
from provisioner.engine.registry import Step, register
from provisioner.engine.retries import lookup

DETECTOR_ARN = "arn:{partition}:guardduty:{region}:{account}:detector/*"
# GuardDuty bills by what it analyses (CloudTrail management events, VPC flow logs and DNS
# logs, per million events and per GB), after a 30-day free trial per account and region. AWS's
# pricing examples put a small account at a few dollars a month; a lab stack is below that.
USAGE_BASED = Free("GuardDuty is usage-based: about $4.00 per million CloudTrail management events and $1.00 "
                   "per GB of VPC flow and DNS logs analysed (us-east-1, after a 30-day free trial), typically "
                   "$1-5 a month for a lab stack")


@register
class GuardDutyDetector(Step):
    """AWS allows one detector per account and region (CreateDetector answers
    BadRequestException for a second). One that exists without the stack's tags is the
    account's: the stack uses it, never changes its tags, and `down` leaves it (its discovery
    finds only a detector this stack made and tagged). Only a detector the stack created is
    deleted; the state remembers which (`created`)."""

    kind = "guardduty_detector"
    # GuardDuty answers an unknown detector id with its generic codes (BadRequestException on
    # AWS, InvalidInputException's body): said only of the detector id itself here.
    gone_codes = frozenset({"BadRequestException", "InvalidInputException"})
    aws_type = "AWS::GuardDuty::Detector"
    listing = Listing("guardduty_detector", "guardduty", "list_detectors", "DetectorIds[].{DetectorId: @}",
                      "DetectorId", label="GuardDuty detectors",
                      tags=ItemTags("get_detector", "DetectorId", "Tags", as_map=True),
                      price=USAGE_BASED)
    iam = Iam(create=(actions("guardduty:CreateDetector", "guardduty:TagResource", on="*"),),
              read=(actions("guardduty:ListDetectors"), actions("guardduty:GetDetector", on=DETECTOR_ARN)),
              change=(actions("guardduty:TagResource", "guardduty:UpdateDetector", on=DETECTOR_ARN),),
              delete=(actions("guardduty:DeleteDetector", on=DETECTOR_ARN),))

    def __init__(self):
        super().__init__("guardduty-detector", depends_on=())

    @classmethod
    def instances(cls, config):
        return [cls()] if config.audit else []

    def _get(self, ctx, detector_id):
        detector = lookup(ctx.client("guardduty").get_detector, DetectorId=detector_id, gone=self.gone_codes)
        if detector is None:
            return None
        tags = [{"Key": k, "Value": v} for k, v in (detector.get("Tags") or {}).items()]
        return {**detector, "DetectorId": detector_id, "TagList": tags}

    def _ids(self, ctx):
        return [i for page in ctx.client("guardduty").get_paginator("list_detectors").paginate()
                for i in page.get("DetectorIds", [])]

    def find_all(self, ctx, known_id):
        """The stack's own detector only (what `down` deletes): a remembered id that is the
        account's detector (used, not made) is passed by."""
        ids = ([known_id] if known_id else []) + [i for i in self._ids(ctx) if i != known_id]
        for detector_id in ids:
            detector = self._get(ctx, detector_id)
            if detector is not None and ctx.owns(detector["TagList"], self.name):
                return [self._resource(detector, created=True)]
        return []

    def find(self, ctx, known_id):
        """For `up`, `plan` and `status`: the stack's detector, else the account's one."""
        found = super().find(ctx, known_id)
        if found is not None:
            return found
        for detector_id in self._ids(ctx):
            detector = self._get(ctx, detector_id)
            if detector is not None:
                return self._resource(detector, created=False)
        return None

    @staticmethod
    def _resource(detector, created: bool) -> Resource:
        return Resource(id=detector["DetectorId"], attrs={"created": created, "status": detector.get("Status")},
                        raw=detector)

    def create(self, ctx):
        tags = {t["Key"]: t["Value"] for t in ctx.tags(self.name)}
        detector_id = ctx.client("guardduty").create_detector(Enable=True, Tags=tags)["DetectorId"]
        return Resource(id=detector_id, attrs={"created": True, "status": "ENABLED"},
                        raw={"DetectorId": detector_id, "Status": "ENABLED", "TagList": ctx.tags(self.name)})

    def update(self, ctx, resource, apply):
        if not resource.attrs.get("created"):
            return []  # the account's detector: used as it is
        gd = ctx.client("guardduty")
        changes = ctx.converge_tags(resource.raw.get("TagList", []), self.name, apply, lambda missing: gd.tag_resource(
            ResourceArn=f"arn:aws:guardduty:{ctx.region}:{ctx.account}:detector/{resource.id}",
            Tags={t["Key"]: t["Value"] for t in missing}))
        if resource.raw.get("Status") != "ENABLED":
            if apply:
                gd.update_detector(DetectorId=resource.id, Enable=True)
            changes.append("enable the detector (it was suspended)")
        return changes

    def plan_note(self, resource):
        return "the stack's detector" if resource.attrs.get("created") else f"uses the account's detector {resource.id}"

    def delete(self, ctx, resource):
        ctx.client("guardduty").delete_detector(DetectorId=resource.id)

    def outputs(self, resource):
        return {"guardduty_detector": resource.id, "guardduty_detector_created": bool(resource.attrs.get("created"))}

    def describe(self, resource):
        return self.plan_note(resource) + f" ({resource.attrs.get('status') or 'ENABLED'}); `down` " + (
            "deletes it" if resource.attrs.get("created") else "leaves it")
