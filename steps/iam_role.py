from provisioner.registry import Step, register


@register
class InstanceRole(Step):
    """The app instances' role: read the release prefix, plus AmazonSSMManagedInstanceCore."""

    kind = "iam_role"
    aws_type = "AWS::IAM::Role"

    def __init__(self):
        super().__init__("instance-role", depends_on=("assets-bucket",))

    def find_all(self, ctx, known_id):
        raise NotImplementedError

    def create(self, ctx):
        raise NotImplementedError

    def delete(self, ctx, resource):
        raise NotImplementedError
