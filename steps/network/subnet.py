from provisioner.shape.config import ZONE_COUNT
from provisioner.engine.errors import DriftConflict
from provisioner.engine.kinds import FREE, Iam, actions, ec2_listing
from provisioner.engine.registry import Ec2Step, register

from steps.network.vpc import describe_eni, network_interfaces


@register
class Subnet(Ec2Step):
    """The two public subnets hold the load balancer and the NAT gateway; the two private ones
    hold the app instances, which reach the internet only through the NAT gateway. With a
    database or a cache, two data subnets hold them, with no route out of the VPC at all."""

    kind = "subnet"
    gone_codes = frozenset({"InvalidSubnetID.NotFound"})
    not_found_codes = frozenset({"InvalidSubnetID.NotFound"})
    aws_type = "AWS::EC2::Subnet"
    listing = ec2_listing("subnet", "describe_subnets", "Subnets", "SubnetId", price=FREE)
    iam = Iam(create=(actions("ec2:CreateSubnet", "ec2:CreateTags", "ec2:ModifySubnetAttribute"),),
              read=(actions("ec2:DescribeSubnets", "ec2:DescribeNetworkInterfaces"),),
              change=(actions("ec2:ModifySubnetAttribute", "ec2:CreateTags"),),
              delete=(actions("ec2:DeleteSubnet"),))
    describe_operation, result_key = "describe_subnets", "Subnets"
    id_field, id_filter, tag_resource_type = "SubnetId", "subnet-id", "subnet"

    def __init__(self, tier: str, index: int):
        super().__init__(f"{tier}-subnet-{index + 1}", depends_on=("vpc",))
        self.tier, self.index = tier, index

    @classmethod
    def instances(cls, config):
        tiers = ("public", "private", "data") if config.data_subnets else ("public", "private")
        return [cls(tier, i) for tier in tiers for i in range(ZONE_COUNT)]

    def cidr(self, ctx):
        cidrs = {"public": ctx.config.public_subnet_cidrs, "private": ctx.config.private_subnet_cidrs,
                 "data": ctx.config.data_subnet_cidrs}[self.tier]
        return cidrs[self.index]

    def attrs(self, item):
        return {"cidr": item["CidrBlock"], "zone": item["AvailabilityZone"]}

    def create(self, ctx):
        subnet = ctx.retry("eventual-consistency", ctx.ec2.create_subnet,
                           VpcId=ctx.dep("vpc").id, CidrBlock=self.cidr(ctx),
                           AvailabilityZone=ctx.config.zones[self.index],
                           TagSpecifications=ctx.tag_specifications("subnet", self.name))["Subnet"]
        ctx.wait("ec2", "subnet_available", SubnetIds=[subnet["SubnetId"]], what="subnet to become available")
        return self.to_resource(subnet)

    def update(self, ctx, resource, apply):
        want = (self.cidr(ctx), ctx.config.zones[self.index] if ctx.config.zones else resource.raw["AvailabilityZone"])
        have = (resource.raw["CidrBlock"], resource.raw["AvailabilityZone"])
        if have != want:
            raise DriftConflict(
                f"subnet {resource.id} is {have[0]} in {have[1]}, the configuration says {want[0]} in "
                f"{want[1]}; a subnet cannot be moved in place",
                hint="keep the stack's CIDRs, or `provision down` and build it again")
        changes = super().update(ctx, resource, apply)
        # Public subnets too: only the load balancer and the NAT gateway live there, and both get
        # their addresses explicitly, so nothing should get a public IP by accident.
        if resource.raw.get("MapPublicIpOnLaunch"):
            changes.append("turn off auto-assigned public IPs")
            if apply:
                ctx.ec2.modify_subnet_attribute(SubnetId=resource.id, MapPublicIpOnLaunch={"Value": False})
        return changes

    def delete(self, ctx, resource):
        ctx.retry("dependency", ctx.ec2.delete_subnet, SubnetId=resource.id,
                  blocked_by=lambda: ", ".join(map(describe_eni, network_interfaces(ctx, "subnet-id", resource.id))))

    def outputs(self, resource):
        return {f"{self.tier}_subnet_{self.index + 1}_id": resource.id}

    def describe(self, resource):
        return f"{resource.attrs['cidr']} in {resource.attrs['zone']}"

