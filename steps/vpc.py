from provisioner.errors import DriftConflict
from provisioner.registry import Ec2Step, register

DNS_ATTRIBUTES = {"enableDnsSupport": "EnableDnsSupport", "enableDnsHostnames": "EnableDnsHostnames"}


@register
class Vpc(Ec2Step):
    kind = "vpc"
    aws_type = "AWS::EC2::VPC"
    describe_operation, result_key = "describe_vpcs", "Vpcs"
    id_field, id_filter, tag_resource_type = "VpcId", "vpc-id", "vpc"

    def attrs(self, item):
        return {"cidr": item["CidrBlock"]}

    def create(self, ctx):
        vpc = ctx.ec2.create_vpc(CidrBlock=ctx.config.vpc_cidr,
                                 TagSpecifications=ctx.tag_specifications("vpc", self.name))["Vpc"]
        ctx.wait("ec2", "vpc_available", VpcIds=[vpc["VpcId"]], what="VPC to become available")
        # Instances need DNS hostnames for the ALB's targets and the SSM agent; two calls because
        # ModifyVpcAttribute takes one attribute at a time.
        for attribute, parameter in DNS_ATTRIBUTES.items():
            ctx.retry("eventual-consistency", ctx.ec2.modify_vpc_attribute,
                      VpcId=vpc["VpcId"], **{parameter: {"Value": True}})
        return self.to_resource(vpc)

    def update(self, ctx, resource, apply):
        if resource.raw["CidrBlock"] != ctx.config.vpc_cidr:
            raise DriftConflict(
                f"VPC {resource.id} has CIDR {resource.raw['CidrBlock']}, the configuration says "
                f"{ctx.config.vpc_cidr}; a VPC's CIDR cannot be changed in place",
                hint="keep the stack's CIDR, or `provision down` and build it again")
        changes = super().update(ctx, resource, apply)
        for attribute, parameter in DNS_ATTRIBUTES.items():
            value = ctx.ec2.describe_vpc_attribute(VpcId=resource.id, Attribute=attribute)[parameter]["Value"]
            if not value:
                changes.append(f"turn on {attribute}")
                if apply:
                    ctx.ec2.modify_vpc_attribute(VpcId=resource.id, **{parameter: {"Value": True}})
        return changes

    def delete(self, ctx, resource):
        ctx.retry("dependency", ctx.ec2.delete_vpc, VpcId=resource.id,
                  blocked_by=lambda: vpc_blockers(ctx, resource.id))

    def outputs(self, resource):
        return {"vpc_id": resource.id}

    def describe(self, resource):
        return f"{resource.raw.get('CidrBlock', resource.attrs.get('cidr'))}, {resource.raw.get('State', '')}"


def vpc_blockers(ctx, vpc_id):
    """What keeps a VPC from being deleted: network interfaces first (the usual culprit, left by
    a load balancer or NAT gateway), then any subnet or non-default security group."""
    subnets = ctx.ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])["Subnets"]
    return ", ".join([describe_eni(e) for e in network_interfaces(ctx, "vpc-id", vpc_id)]
                     + [f"subnet {s['SubnetId']}" for s in subnets])


def network_interfaces(ctx, filter_name: str, value: str) -> list[dict]:
    """The interfaces in a VPC or subnet, or using a group: what AWS names when it refuses a
    delete with DependencyViolation."""
    return ctx.ec2.describe_network_interfaces(
        Filters=[{"Name": filter_name, "Values": [value]}])["NetworkInterfaces"]


def describe_eni(eni: dict) -> str:
    what = eni.get("Description") or eni.get("InterfaceType") or "network interface"
    return f"{eni['NetworkInterfaceId']} ({what}, {eni.get('Status', '?')})"
