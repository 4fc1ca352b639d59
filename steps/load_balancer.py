from provisioner.registry import Step, register


@register
class LoadBalancer(Step):
    """The internet-facing Application Load Balancer over both public subnets."""

    kind = "load_balancer"
    aws_type = "AWS::ElasticLoadBalancingV2::LoadBalancer"

    def __init__(self):
        super().__init__("load-balancer", depends_on=("public-subnet-1", "public-subnet-2", "alb-security-group", "internet-gateway-attachment"))

    def find_all(self, ctx, known_id):
        raise NotImplementedError

    def create(self, ctx):
        raise NotImplementedError

    def delete(self, ctx, resource):
        raise NotImplementedError
