from provisioner.registry import Step, register


@register
class ListenerRule(Step):
    """/api/* on the HTTPS listener to the backend target group."""

    kind = "listener_rule"
    aws_type = "AWS::ElasticLoadBalancingV2::ListenerRule"

    def __init__(self):
        super().__init__("api-routing-rule", depends_on=("https-listener", "backend-target-group"))

    def find_all(self, ctx, known_id):
        raise NotImplementedError

    def create(self, ctx):
        raise NotImplementedError

    def delete(self, ctx, resource):
        raise NotImplementedError
