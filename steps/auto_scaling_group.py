from provisioner.registry import Step, register


@register
class AutoScalingGroup(Step):
    """The app instances in both private subnets, registered in both target groups."""

    kind = "auto_scaling_group"
    aws_type = "AWS::AutoScaling::AutoScalingGroup"

    def __init__(self):
        super().__init__("auto-scaling-group", depends_on=("launch-template", "private-subnet-1-association", "private-subnet-2-association", "frontend-target-group", "backend-target-group"))

    def find_all(self, ctx, known_id):
        raise NotImplementedError

    def create(self, ctx):
        raise NotImplementedError

    def delete(self, ctx, resource):
        raise NotImplementedError
