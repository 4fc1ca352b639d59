from provisioner.registry import Ec2Step, register


@register
class InternetGateway(Ec2Step):
    kind = "internet_gateway"
    gone_codes = frozenset({"InvalidInternetGatewayID.NotFound"})
    aws_type = "AWS::EC2::InternetGateway"
    describe_operation, result_key = "describe_internet_gateways", "InternetGateways"
    id_field, id_filter, tag_resource_type = "InternetGatewayId", "internet-gateway-id", "internet-gateway"

    def create(self, ctx):
        igw = ctx.ec2.create_internet_gateway(
            TagSpecifications=ctx.tag_specifications("internet-gateway", self.name))["InternetGateway"]
        return self.to_resource(igw)

    def delete(self, ctx, resource):
        # Detached by the attachment step first; retried in case the detach is still settling.
        ctx.retry("dependency", ctx.ec2.delete_internet_gateway, InternetGatewayId=resource.id)

    def outputs(self, resource):
        return {"internet_gateway_id": resource.id}
