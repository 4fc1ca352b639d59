from provisioner.registry import Step, register


@register
class ProductImages(Step):
    """The app's product images under images/ in the assets bucket, with content types and cache headers."""

    kind = "product_images"
    aws_type = "AWS::S3::Object"
    tagged = False
    def __init__(self):
        super().__init__("product-images", depends_on=("assets-bucket",))

    def find_all(self, ctx, known_id):
        raise NotImplementedError

    def create(self, ctx):
        raise NotImplementedError

    def delete(self, ctx, resource):
        raise NotImplementedError
