from provisioner.registry import Step, register


@register
class Listener(Step):
    """HTTPS 443 (the certificate, default forward to the frontend) and HTTP 80 (301 to HTTPS)."""

    kind = "listener"
    aws_type = "AWS::ElasticLoadBalancingV2::Listener"

    def __init__(self, protocol: str, port: int, depends_on):
        super().__init__(f"{protocol.lower()}-listener", depends_on=("load-balancer", *depends_on))
        self.protocol, self.port = protocol, port

    @classmethod
    def instances(cls, config):
        return [cls("HTTPS", 443, ("certificate", "frontend-target-group")), cls("HTTP", 80, ())]

    def find_all(self, ctx, known_id):
        raise NotImplementedError

    def create(self, ctx):
        raise NotImplementedError

    def delete(self, ctx, resource):
        raise NotImplementedError
