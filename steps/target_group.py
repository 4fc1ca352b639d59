from provisioner.registry import Step, register


@register
class TargetGroup(Step):
    """frontend (port 3000, health check /) and backend (port 5000, health check /api/health)."""

    kind = "target_group"
    aws_type = "AWS::ElasticLoadBalancingV2::TargetGroup"

    def __init__(self, role: str, port: int, health_check_path: str):
        super().__init__(f"{role}-target-group", depends_on=("vpc",))
        self.role, self.port, self.health_check_path = role, port, health_check_path

    @classmethod
    def instances(cls, config):
        return [cls("frontend", 3000, "/"), cls("backend", 5000, "/api/health")]

    def find_all(self, ctx, known_id):
        raise NotImplementedError

    def create(self, ctx):
        raise NotImplementedError

    def delete(self, ctx, resource):
        raise NotImplementedError
