from provisioner.registry import Step, register


@register
class LaunchTemplate(Step):
    """What every app instance boots from."""

    kind = "launch_template"
    aws_type = "AWS::EC2::LaunchTemplate"

    def __init__(self):
        super().__init__("launch-template", depends_on=("web-security-group", "instance-profile", "instance-profile-role", "app-release", "product-images"))

    def find_all(self, ctx, known_id):
        raise NotImplementedError

    def create(self, ctx):
        raise NotImplementedError

    def delete(self, ctx, resource):
        raise NotImplementedError
