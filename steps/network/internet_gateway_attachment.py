from provisioner.engine.context import Resource
from provisioner.engine.errors import DriftConflict
from provisioner.engine.kinds import Iam, actions
from provisioner.engine.registry import Step, register

from steps.network.vpc import describe_eni, network_interfaces


@register
class InternetGatewayAttachment(Step):
    """The gateway's attachment to the VPC, a relationship of its own (as aws-nuke models it) so
    that teardown can detach it after the NAT gateway's public address is gone and before the
    gateway is deleted."""

    kind = "internet_gateway_attachment"
    # Detached already, or the gateway or the VPC is gone and the attachment with it.
    gone_codes = frozenset({"Gateway.NotAttached", "InvalidInternetGatewayID.NotFound", "InvalidVpcID.NotFound"})
    aws_type = "AWS::EC2::VPCGatewayAttachment"
    found_through = "internet_gateway"
    iam = Iam(create=(actions("ec2:AttachInternetGateway"),), read=(actions("ec2:DescribeInternetGateways"),),
              delete=(actions("ec2:DetachInternetGateway", "ec2:DescribeAddresses"),))
    tagged = False

    def __init__(self):
        super().__init__(depends_on=("internet-gateway", "vpc"))

    def find_all(self, ctx, known_id):
        igw = ctx.dep("internet-gateway")
        if igw is None:
            return []
        gateways = ctx.ec2.describe_internet_gateways(
            Filters=[{"Name": "internet-gateway-id", "Values": [igw.id]}])["InternetGateways"]
        return [Resource(id=f"{igw.id}/{a['VpcId']}", attrs={"internet_gateway_id": igw.id, "vpc_id": a["VpcId"]})
                for g in gateways for a in g.get("Attachments", [])
                if a.get("State") in ("attached", "attaching", "available")]

    def create(self, ctx):
        igw, vpc = ctx.dep("internet-gateway").id, ctx.dep("vpc").id
        ctx.retry("eventual-consistency", ctx.ec2.attach_internet_gateway, InternetGatewayId=igw, VpcId=vpc)
        return Resource(id=f"{igw}/{vpc}", attrs={"internet_gateway_id": igw, "vpc_id": vpc})

    def update(self, ctx, resource, apply):
        vpc = ctx.dep("vpc")
        if vpc is not None and resource.attrs["vpc_id"] != vpc.id:
            raise DriftConflict(f"internet gateway {resource.attrs['internet_gateway_id']} is attached to "
                                f"{resource.attrs['vpc_id']}, not to the stack's VPC {vpc.id}")
        return []

    def delete(self, ctx, resource):
        # Real AWS refuses the detach while the VPC still has mapped public addresses (the NAT
        # gateway's Elastic IP until its interface is released): DependencyViolation, retried.
        vpc_id = resource.attrs["vpc_id"]
        ctx.retry("dependency", ctx.ec2.detach_internet_gateway,
                  InternetGatewayId=resource.attrs["internet_gateway_id"], VpcId=vpc_id,
                  blocked_by=lambda: public_address_blockers(ctx, vpc_id))

    def describe(self, resource):
        return f"attached to {resource.attrs['vpc_id']}"


def public_address_blockers(ctx, vpc_id):
    enis = network_interfaces(ctx, "vpc-id", vpc_id)
    return ", ".join(f"{describe_eni(e)} with public IP {e['Association']['PublicIp']}"
                     for e in enis if e.get("Association", {}).get("PublicIp"))
