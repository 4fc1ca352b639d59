from provisioner.engine.kinds import FREE, Iam, Quota, actions, ec2_listing
from provisioner.account.quotas import REGION_SCOPE, one_per_stack, still_by_kind
from provisioner.engine.registry import Ec2Step, register


def internet_gateways_in_use(reads):
    return {REGION_SCOPE: len(reads.pages("ec2", "describe_internet_gateways", "InternetGateways"))}


# Each stack's VPC has its own internet gateway; the default is the same 5 as for VPCs.
INTERNET_GATEWAYS = Quota("internet_gateways", "Internet gateways per Region", "vpc", "L-A4707A72",
                          internet_gateways_in_use, one_per_stack, still_by_kind("internet_gateway", lambda config: 1))


@register
class InternetGateway(Ec2Step):
    kind = "internet_gateway"
    gone_codes = frozenset({"InvalidInternetGatewayID.NotFound"})
    not_found_codes = frozenset({"InvalidInternetGatewayID.NotFound"})
    aws_type = "AWS::EC2::InternetGateway"
    listing = ec2_listing("internet_gateway", "describe_internet_gateways", "InternetGateways", "InternetGatewayId",
                          price=FREE)
    quotas = (INTERNET_GATEWAYS,)
    iam = Iam(create=(actions("ec2:CreateInternetGateway", "ec2:CreateTags"),),
              read=(actions("ec2:DescribeInternetGateways"),), change=(actions("ec2:CreateTags"),),
              delete=(actions("ec2:DeleteInternetGateway"),))
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
