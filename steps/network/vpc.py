from provisioner.engine.errors import DriftConflict
from provisioner.engine.kinds import FREE, Iam, Quota, actions, ec2_listing
from provisioner.account.quotas import REGION_SCOPE, one_per_stack, still_by_kind
from provisioner.engine.registry import Ec2Step, register

DNS_ATTRIBUTES = {"enableDnsSupport": "EnableDnsSupport", "enableDnsHostnames": "EnableDnsHostnames"}


def vpcs_in_use(reads):
    # Every VPC counts, the default VPC and other tools' too.
    return {REGION_SCOPE: len(reads.pages("ec2", "describe_vpcs", "Vpcs"))}


VPCS = Quota("vpcs", "VPCs per Region", "vpc", "L-F678F1CE", vpcs_in_use, one_per_stack,
             still_by_kind("vpc", lambda config: 1))


@register
class Vpc(Ec2Step):
    kind = "vpc"
    gone_codes = frozenset({"InvalidVpcID.NotFound"})
    not_found_codes = frozenset({"InvalidVpcID.NotFound"})
    aws_type = "AWS::EC2::VPC"
    listing = ec2_listing("vpc", "describe_vpcs", "Vpcs", "VpcId", label="VPCs", price=FREE)
    quotas = (VPCS,)
    iam = Iam(create=(actions("ec2:CreateVpc", "ec2:CreateTags", "ec2:ModifyVpcAttribute",
                              "ec2:RevokeSecurityGroupIngress", "ec2:RevokeSecurityGroupEgress"),),
              read=(actions("ec2:DescribeVpcs", "ec2:DescribeVpcAttribute", "ec2:DescribeSecurityGroups",
                            "ec2:DescribeSecurityGroupRules", "ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets"),),
              change=(actions("ec2:ModifyVpcAttribute", "ec2:CreateTags", "ec2:RevokeSecurityGroupIngress",
                              "ec2:RevokeSecurityGroupEgress"),),
              delete=(actions("ec2:DeleteVpc"),))
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
        ctx.wait("ec2", "security_group_exists", Filters=default_group_filters(vpc["VpcId"]),
                 what="the VPC's default security group to exist")
        close_default_security_group(ctx, vpc["VpcId"], apply=True)
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
        return changes + close_default_security_group(ctx, resource.id, apply)

    def delete(self, ctx, resource):
        ctx.retry("dependency", ctx.ec2.delete_vpc, VpcId=resource.id,
                  blocked_by=lambda: vpc_blockers(ctx, resource.id))

    def outputs(self, resource):
        return {"vpc_id": resource.id}

    def describe(self, resource):
        return f"{resource.raw.get('CidrBlock', resource.attrs.get('cidr'))}, {resource.raw.get('State', '')}"


# The VPC's default security group. AWS makes one with every VPC, allowing all inbound traffic
# from itself and all outbound traffic (and ::/0 out when the VPC has IPv6); AWS Foundational
# Security Best Practices EC2.2 says it should allow none. Nothing of the stack uses it (every
# instance, load balancer and bastion has a group of its own), so it is emptied, never used.
#
# It is converged here, as part of the VPC like its DNS attributes, rather than by a step of its
# own: AWS creates it with CreateVpc and removes it with DeleteVpc, and it can be neither created,
# deleted nor tagged at creation by us. A step would have a create and a delete that do nothing,
# and its tags would need a CreateTags after the fact. steps/access/security_group.py is the groups the
# stack creates, names and deletes.
def default_group_filters(vpc_id):
    # "default" is a name AWS reserves: no other group in a VPC can carry it.
    return [{"Name": "vpc-id", "Values": [vpc_id]}, {"Name": "group-name", "Values": ["default"]}]


def close_default_security_group(ctx, vpc_id, apply):
    """Remove every rule of the VPC's default security group; the change line for `up` and
    `plan`. One read when it is already empty (a no-op `up`)."""
    groups = ctx.ec2.describe_security_groups(Filters=default_group_filters(vpc_id))["SecurityGroups"]
    if not groups or not (groups[0].get("IpPermissions") or groups[0].get("IpPermissionsEgress")):
        return []
    group_id = groups[0]["GroupId"]
    rules = []
    for page in ctx.ec2.get_paginator("describe_security_group_rules").paginate(
            Filters=[{"Name": "group-id", "Values": [group_id]}]):
        rules.extend(page["SecurityGroupRules"])
    if not rules:
        return []
    if apply:
        # By rule id: revoking by IpPermissions must restate each rule exactly (a self
        # reference, an IPv6 range, a prefix list), and a rule someone added by hand may be any.
        for is_egress, revoke in ((False, ctx.ec2.revoke_security_group_ingress),
                                  (True, ctx.ec2.revoke_security_group_egress)):
            ids = [r["SecurityGroupRuleId"] for r in rules if bool(r.get("IsEgress")) is is_egress]
            if ids:
                ctx.retry("eventual-consistency", revoke, GroupId=group_id, SecurityGroupRuleIds=ids)
    return [f"remove the default security group's {len(rules)} rule(s)"]


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
