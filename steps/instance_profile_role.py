from provisioner.registry import Step, register


@register
class InstanceProfileRole(Step):
    """The role inside the instance profile, a relationship of its own."""

    kind = "instance_profile_role"
    aws_type = "AWS::IAM::InstanceProfile.Roles"
    tagged = False
    def __init__(self):
        super().__init__("instance-profile-role", depends_on=("instance-role", "instance-profile"))

    def find_all(self, ctx, known_id):
        raise NotImplementedError

    def create(self, ctx):
        raise NotImplementedError

    def delete(self, ctx, resource):
        raise NotImplementedError
