from provisioner.registry import Step, register


@register
class Certificate(Step):
    """The HTTPS listener's certificate: self-signed and imported into ACM, or the one given with --certificate-arn."""

    kind = "certificate"
    aws_type = "AWS::CertificateManager::Certificate"

    def __init__(self):
        super().__init__("certificate", depends_on=())

    def find_all(self, ctx, known_id):
        raise NotImplementedError

    def create(self, ctx):
        raise NotImplementedError

    def delete(self, ctx, resource):
        raise NotImplementedError
