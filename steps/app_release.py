from provisioner.registry import Step, register


@register
class AppRelease(Step):
    """The app directory packed and uploaded under releases/<sha256>.tar.gz (private)."""

    kind = "app_release"
    aws_type = "AWS::S3::Object"
    tagged = False
    def __init__(self):
        super().__init__("app-release", depends_on=("assets-bucket",))

    def find_all(self, ctx, known_id):
        raise NotImplementedError

    def create(self, ctx):
        raise NotImplementedError

    def delete(self, ctx, resource):
        raise NotImplementedError
