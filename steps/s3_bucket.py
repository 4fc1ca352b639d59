from provisioner.registry import Step, register


@register
class AssetsBucket(Step):
    """The product images (public read on images/ only) and the app releases (private, releases/)."""

    kind = "s3_bucket"
    aws_type = "AWS::S3::Bucket"

    def __init__(self):
        super().__init__("assets-bucket", depends_on=())

    def find_all(self, ctx, known_id):
        raise NotImplementedError

    def create(self, ctx):
        raise NotImplementedError

    def delete(self, ctx, resource):
        raise NotImplementedError
