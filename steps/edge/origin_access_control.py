"""The CloudFront Origin Access Control through which the distribution reads the assets bucket (--cdn).

CloudFront signs its requests to S3 with it (SigV4), and the bucket policy lets exactly this
stack's distribution read images/: the bucket itself stays private (Block Public Access fully on).
"""

from provisioner.engine.context import Resource
from provisioner.engine.errors import ConfigError
from provisioner.engine.kinds import Iam, actions
from provisioner.engine.registry import Step, register
from provisioner.engine.retries import lookup

# CloudFront takes no tags on an Origin Access Control: it is known by its name (unique in the
# account) and this description, which no hand-made control of the same name has.
DESCRIPTION = "provision stack {stack}: CloudFront reads the assets bucket"
OAC_ARN = "arn:{partition}:cloudfront::{account}:origin-access-control/*"


def oac_name(ctx) -> str:
    return f"{ctx.stack}-assets"


@register
class OriginAccessControl(Step):
    """Signs CloudFront's requests to the bucket (SigV4, always)."""

    kind = "origin_access_control"
    tagged = False
    found_through = "cloudfront_distribution"
    gone_codes = frozenset({"NoSuchOriginAccessControl"})
    aws_type = "AWS::CloudFront::OriginAccessControl"
    iam = Iam(create=(actions("cloudfront:CreateOriginAccessControl", on=OAC_ARN),),
              read=(actions("cloudfront:ListOriginAccessControls", "cloudfront:GetOriginAccessControl"),),
              change=(actions("cloudfront:UpdateOriginAccessControl", on=OAC_ARN),),
              delete=(actions("cloudfront:DeleteOriginAccessControl", "cloudfront:GetOriginAccessControl",
                              on=OAC_ARN),))

    def __init__(self):
        super().__init__("origin-access-control", depends_on=())

    @classmethod
    def instances(cls, config):
        return [cls()] if config.cdn else []

    def _config(self, ctx) -> dict:
        return {"Name": oac_name(ctx), "Description": DESCRIPTION.format(stack=ctx.stack),
                "SigningProtocol": "sigv4", "SigningBehavior": "always", "OriginAccessControlOriginType": "s3"}

    def _listed(self, ctx) -> list[dict]:
        cloudfront = ctx.client("cloudfront")
        found, marker = [], None
        while True:
            page = cloudfront.list_origin_access_controls(**({"Marker": marker} if marker else {}))
            listed = page.get("OriginAccessControlList") or {}
            found += listed.get("Items") or []
            marker = listed.get("NextMarker")
            if not listed.get("IsTruncated") or not marker:
                return found

    def find_all(self, ctx, known_id):
        mine = []
        for item in self._listed(ctx):
            if item.get("Name") != oac_name(ctx) and item.get("Id") != known_id:
                continue
            if item.get("Description") != DESCRIPTION.format(stack=ctx.stack):
                if item.get("Id") == known_id:
                    raise ConfigError(f"the state file names Origin Access Control {known_id}, which is not this "
                                      "stack's (its description is another's)",
                                      hint="move the state file aside and run again")
                continue
            mine.append(Resource(id=item["Id"], attrs={"id": item["Id"], "name": item["Name"]}, raw=item))
        return mine

    def check_name(self, ctx, known_id):
        for item in self._listed(ctx):
            if item.get("Name") == oac_name(ctx) and item.get("Description") != DESCRIPTION.format(stack=ctx.stack):
                raise ConfigError(f"a CloudFront Origin Access Control named {oac_name(ctx)} exists and is not this "
                                  "stack's", hint="delete or rename it, or use another --stack name")

    def create(self, ctx):
        made = ctx.client("cloudfront").create_origin_access_control(
            OriginAccessControlConfig=self._config(ctx))["OriginAccessControl"]
        return Resource(id=made["Id"], attrs={"id": made["Id"], "name": oac_name(ctx)},
                        raw={"Id": made["Id"], **made.get("OriginAccessControlConfig", self._config(ctx))})

    def update(self, ctx, resource, apply):
        wanted = self._config(ctx)
        differ = [k for k in ("SigningProtocol", "SigningBehavior", "OriginAccessControlOriginType")
                  if resource.raw.get(k) != wanted[k]]
        if not differ:
            return []
        if apply:
            cloudfront = ctx.client("cloudfront")
            etag = cloudfront.get_origin_access_control(Id=resource.id)["ETag"]
            cloudfront.update_origin_access_control(Id=resource.id, IfMatch=etag, OriginAccessControlConfig=wanted)
        return [f"set {', '.join(f'{k} {wanted[k]}' for k in differ)}"]

    def delete(self, ctx, resource):
        cloudfront = ctx.client("cloudfront")
        # Deleting takes the current ETag (IfMatch), as every CloudFront change does.
        got = lookup(cloudfront.get_origin_access_control, Id=resource.id, gone=self.gone_codes)
        if got is not None:
            cloudfront.delete_origin_access_control(Id=resource.id, IfMatch=got["ETag"])

    def describe(self, resource):
        return f"{resource.attrs.get('name')}, SigV4 to S3"
