from provisioner.registry import Step, register


@register
class InstanceProfile(Step):
    """The instance profile the launch template names."""

    kind = "instance_profile"
    aws_type = "AWS::IAM::InstanceProfile"

    def __init__(self):
        super().__init__("instance-profile", depends_on=())

    def find_all(self, ctx, known_id):
        raise NotImplementedError

    def create(self, ctx):
        raise NotImplementedError

    def delete(self, ctx, resource):
        raise NotImplementedError
