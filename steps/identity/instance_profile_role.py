from provisioner.engine.context import Resource
from provisioner.engine.kinds import Iam, actions
from provisioner.engine.registry import Step, register
from provisioner.engine.retries import lookup


@register
class InstanceProfileRole(Step):
    """The role inside the instance profile, a relationship of its own (as aws-nuke models it),
    so that teardown takes the role out of the profile before deleting either."""

    kind = "instance_profile_role"
    # The profile or the role is gone, and with it their link.
    gone_codes = frozenset({"NoSuchEntity"})
    aws_type = "AWS::IAM::InstanceProfile.Roles"
    found_through = "instance_profile"
    iam = Iam(create=(actions("iam:AddRoleToInstanceProfile",
                              on="arn:{partition}:iam::{account}:instance-profile/provision/{stack}-{region}-web"),
                      actions("iam:PassRole", on="arn:{partition}:iam::{account}:role/provision/{stack}-{region}-web",
                              condition={"StringEquals": {"iam:PassedToService": "ec2.amazonaws.com"}})),
              read=(actions("iam:GetInstanceProfile", on="arn:{partition}:iam::{account}:instance-profile/provision/{stack}-{region}-web"),),
              delete=(actions("iam:RemoveRoleFromInstanceProfile",
                              on="arn:{partition}:iam::{account}:instance-profile/provision/{stack}-{region}-web"),))
    tagged = False

    def __init__(self):
        super().__init__("instance-profile-role", depends_on=("instance-role", "instance-profile"))

    def find_all(self, ctx, known_id):
        profile = ctx.dep("instance-profile")
        if profile is None:
            return []
        found = lookup(ctx.client("iam").get_instance_profile, InstanceProfileName=profile.id, gone=self.gone_codes)
        if found is None:
            return []
        roles = found["InstanceProfile"]["Roles"]
        return [self._resource(profile.id, r["RoleName"]) for r in roles]

    def _resource(self, profile, role):
        return Resource(id=f"{profile}/{role}", attrs={"profile": profile, "role": role})

    def create(self, ctx):
        profile, role = ctx.dep("instance-profile").id, ctx.dep("instance-role").id
        # IAM is eventually consistent: a role or profile created a moment ago can be unknown
        # here (NoSuchEntity).
        ctx.retry("eventual-consistency", ctx.client("iam").add_role_to_instance_profile,
                  InstanceProfileName=profile, RoleName=role)
        return self._resource(profile, role)

    def update(self, ctx, resource, apply):
        role = ctx.dep("instance-role")
        if role is None or resource.attrs["role"] == role.id:
            return []
        # A profile holds one role: the other one goes out before ours goes in.
        profile, other = resource.attrs["profile"], resource.attrs["role"]
        if apply:
            iam = ctx.client("iam")
            iam.remove_role_from_instance_profile(InstanceProfileName=profile, RoleName=other)
            ctx.retry("eventual-consistency", iam.add_role_to_instance_profile,
                      InstanceProfileName=profile, RoleName=role.id)
            resource.id = f"{profile}/{role.id}"
            resource.attrs["role"] = role.id
        return [f"replace role {other} with {role.id}"]

    def delete(self, ctx, resource):
        ctx.client("iam").remove_role_from_instance_profile(
            InstanceProfileName=resource.attrs["profile"], RoleName=resource.attrs["role"])

    def describe(self, resource):
        return f"role {resource.attrs['role']} in {resource.attrs['profile']}"
