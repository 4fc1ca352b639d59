from provisioner.engine.context import Resource
from provisioner.engine.errors import ConfigError
from provisioner.engine.kinds import FREE, Iam, ItemTags, Listing, actions
from provisioner.engine.registry import Step, register
from provisioner.engine.retries import error_code

from steps.identity.iam_role import IAM_PATH, find_owned, iam_name, iam_of_region


PROFILE_ARN = "arn:{partition}:iam::{account}:instance-profile/provision/{stack}-{region}-web"


@register
class InstanceProfile(Step):
    """The instance profile the launch template names."""

    kind = "instance_profile"
    gone_codes = frozenset({"NoSuchEntity"})
    not_found_codes = frozenset({"NoSuchEntity"})
    aws_type = "AWS::IAM::InstanceProfile"
    listing = Listing("instance_profile", "iam", "list_instance_profiles", "InstanceProfiles", "InstanceProfileName",
                      label="IAM instance profiles", params={"PathPrefix": IAM_PATH},
                      tags=ItemTags("list_instance_profile_tags", "InstanceProfileName", "Tags"),
                      created_field="CreateDate",
                      candidate=lambda ctx, i: i["InstanceProfileName"].endswith(f"-{ctx.region}-web"),
                      belongs=iam_of_region, price=FREE)
    iam = Iam(create=(actions("iam:CreateInstanceProfile", "iam:TagInstanceProfile", on=PROFILE_ARN),),
              read=(actions("iam:GetInstanceProfile", "iam:ListInstanceProfileTags", on=PROFILE_ARN),
                    actions("iam:ListInstanceProfiles")),
              change=(actions("iam:TagInstanceProfile", on=PROFILE_ARN),),
              delete=(actions("iam:DeleteInstanceProfile", "iam:RemoveRoleFromInstanceProfile", on=PROFILE_ARN),))

    def __init__(self):
        super().__init__("instance-profile", depends_on=())

    def find_all(self, ctx, known_id):
        iam = ctx.client("iam")
        profile = find_owned(ctx, self.name, known_id,
                             lambda name: iam.get_instance_profile(InstanceProfileName=name)["InstanceProfile"])
        return [self._resource(profile)] if profile else []

    def _resource(self, profile):
        return Resource(id=profile["InstanceProfileName"],
                        attrs={"name": profile["InstanceProfileName"], "arn": profile["Arn"]}, raw=profile)

    def create(self, ctx):
        from botocore.exceptions import ClientError

        name = iam_name(ctx)
        try:
            profile = ctx.client("iam").create_instance_profile(
                InstanceProfileName=name, Path=IAM_PATH, Tags=ctx.tags(self.name))["InstanceProfile"]
        except ClientError as e:
            if error_code(e) == "EntityAlreadyExists":
                raise ConfigError(f"an IAM instance profile named {name} exists but is not this stack's "
                                  "(no provision tags)",
                                  hint="delete that instance profile, or use another --stack name") from None
            raise
        return self._resource(profile)

    def update(self, ctx, resource, apply):
        return ctx.converge_tags(resource.raw.get("Tags", []), self.name, apply, lambda missing: ctx.client(
            "iam").tag_instance_profile(InstanceProfileName=resource.id, Tags=missing))

    def delete(self, ctx, resource):
        # Right after RemoveRoleFromInstanceProfile, IAM can still answer DeleteConflict.
        ctx.retry("dependency", ctx.client("iam").delete_instance_profile, InstanceProfileName=resource.id)

    def describe(self, resource):
        return resource.attrs.get("arn", "")
