from provisioner.engine.errors import DriftConflict
from provisioner.engine.kinds import ELB_TAGS, Iam, Listing, PriceKey, Quota, UsageNote, actions
from provisioner.account.pricing import price_of
from provisioner.account.quotas import REGION_SCOPE, one_per_stack, still_by_kind
from provisioner.engine.registry import register

from steps.network.elastic_ip import PUBLIC_IPV4_HOUR
from steps.edge.elbv2 import ElbStep, described, load_balancer_name

SUBNETS = ("public-subnet-1", "public-subnet-2")
ATTRIBUTES = {
    # Requests with malformed headers are dropped at the edge instead of reaching the app
    # (request smuggling); AWS Security Hub flags ALBs without it (ELB.4).
    "routing.http.drop_invalid_header_fields.enabled": "true",
    "routing.http2.enabled": "true",
    # The tool owns the load balancer and `down` must be able to delete it.
    "deletion_protection.enabled": "false",
}


LOAD_BALANCER_ARN = "arn:{partition}:elasticloadbalancing:{region}:{account}:loadbalancer/app/{stack}-*"


def _products(products, region):
    return products("AWSELB", productFamily="Load Balancer-Application", regionCode=region)


ALB_HOUR = PriceKey("alb_hour", "Application Load Balancer", "hour",
                    lambda products, region, types: price_of(_products(products, region), "LoadBalancerUsage"))


def capacity_units(products, region):
    per_lcu = price_of(_products(products, region), "LCUUsage")
    return None if per_lcu is None else f"${per_lcu:g} per LCU-hour (load balancer capacity units used)"


def load_balancer_charges(item, prices, region):
    detail = getattr(item, "detail", None) or {}
    name = getattr(item, "id", None) or "load balancer"
    lb_type = detail.get("type", "application")
    if lb_type != "application":
        return [], [f"{lb_type} load balancer {name} has no price in the table (only Application Load Balancers "
                    "are priced)"]
    rows = [("Application Load Balancer", 1, "load balancer", prices["alb_hour"])]
    if detail.get("scheme", "internet-facing") != "internet-facing":
        return rows, []
    # An internet-facing ALB holds one public IPv4 address per zone, each billed like an EIP.
    zones = detail.get("zones")
    if isinstance(zones, int) and zones > 0:
        return rows + [("public IPv4 address (load balancer)", zones, "address", prices["public_ipv4_hour"])], []
    return rows, [f"load balancer {name}: its public IPv4 addresses are not counted (number of zones unknown)"]


def load_balancer_detail(item):
    return {"type": item.get("Type"), "scheme": item.get("Scheme"),
            "zones": len(item.get("AvailabilityZones") or []), "vpc_id": item.get("VpcId"),
            "dns_name": item.get("DNSName")}


def load_balancers_in_use(reads):
    balancers = reads.pages("elbv2", "describe_load_balancers", "LoadBalancers")
    return {REGION_SCOPE: sum(1 for b in balancers if b.get("Type") == "application")}


LOAD_BALANCERS = Quota("load_balancers", "Application Load Balancers per Region", "elasticloadbalancing",
                       "L-53DA6B97", load_balancers_in_use, one_per_stack, still_by_kind("load_balancer", lambda c: 1))
# The first load balancer of an account makes ELB's service-linked role.
ELB_SERVICE_ROLE = actions(
    "iam:CreateServiceLinkedRole",
    on="arn:{partition}:iam::{account}:role/aws-service-role/elasticloadbalancing.amazonaws.com/*",
    condition={"StringEquals": {"iam:AWSServiceName": "elasticloadbalancing.amazonaws.com"}})


@register
class LoadBalancer(ElbStep):
    """The internet-facing Application Load Balancer over both public subnets."""

    kind = "load_balancer"
    gone_codes = frozenset({"LoadBalancerNotFound"})
    not_found_codes = frozenset({"LoadBalancerNotFound"})
    # An Application Load Balancer is `provisioning` for 2-5 minutes.
    create_timeout = delete_timeout = 600
    aws_type = "AWS::ElasticLoadBalancingV2::LoadBalancer"
    listing = Listing("load_balancer", "elbv2", "describe_load_balancers", "LoadBalancers", "LoadBalancerArn",
                      tags=ELB_TAGS, created_field="CreatedTime", detail=load_balancer_detail,
                      price=load_balancer_charges, price_keys=(ALB_HOUR, PUBLIC_IPV4_HOUR),
                      usage_notes=(UsageNote("ALB LCU", capacity_units),))
    quotas = (LOAD_BALANCERS,)
    iam = Iam(create=(actions("elasticloadbalancing:CreateLoadBalancer", "elasticloadbalancing:AddTags",
                              "elasticloadbalancing:ModifyLoadBalancerAttributes", on=LOAD_BALANCER_ARN),
                      ELB_SERVICE_ROLE),
              read=(actions("elasticloadbalancing:DescribeLoadBalancers", "elasticloadbalancing:DescribeTags",
                            "elasticloadbalancing:DescribeLoadBalancerAttributes", "ec2:DescribeNetworkInterfaces"),),
              change=(actions("elasticloadbalancing:ModifyLoadBalancerAttributes", "elasticloadbalancing:AddTags",
                              "elasticloadbalancing:SetSecurityGroups", "elasticloadbalancing:SetSubnets",
                              on=LOAD_BALANCER_ARN),),
              delete=(actions("elasticloadbalancing:DeleteLoadBalancer", on=LOAD_BALANCER_ARN),))
    arn_key = "LoadBalancerArn"

    def __init__(self):
        # The internet gateway attachment: AWS refuses an internet-facing load balancer in a VPC
        # without an attached gateway (InvalidSubnet), and the reversed order deletes the load
        # balancer (and its public addresses) before the gateway is detached.
        super().__init__("load-balancer", depends_on=(*SUBNETS, "alb-security-group", "internet-gateway-attachment"))

    def attrs(self, item):
        return {"arn": item["LoadBalancerArn"], "name": item["LoadBalancerName"], "dns_name": item["DNSName"],
                "canonical_hosted_zone_id": item.get("CanonicalHostedZoneId")}

    def by_arn(self, ctx, arn):
        return described(ctx.client("elbv2").describe_load_balancers, "LoadBalancers", LoadBalancerArns=[arn])

    def candidates(self, ctx):
        # Names are unique in a region, so this is at most one load balancer, ours if its tags say so.
        return described(ctx.client("elbv2").describe_load_balancers, "LoadBalancers", Names=[load_balancer_name(ctx)])

    def _subnets(self, ctx):
        return sorted(ctx.dep(s).id for s in SUBNETS)

    def create(self, ctx):
        elb = ctx.client("elbv2")
        tags = ctx.tags(self.name)
        balancer = ctx.retry("eventual-consistency", elb.create_load_balancer,
                             Name=load_balancer_name(ctx), Type="application", Scheme="internet-facing",
                             IpAddressType="ipv4", Subnets=self._subnets(ctx),
                             SecurityGroups=[ctx.dep("alb-security-group").id], Tags=tags)["LoadBalancers"][0]
        arn = balancer["LoadBalancerArn"]
        # Attributes can be set while it is still provisioning.
        ctx.retry("eventual-consistency", elb.modify_load_balancer_attributes, LoadBalancerArn=arn,
                  Attributes=[{"Key": k, "Value": v} for k, v in ATTRIBUTES.items()])
        # Returned while it is still provisioning: its ARN and DNS name exist, and what needs
        # only those (`created("load-balancer")`) starts now; `ready` waits until it is active.
        return self.created(self.by_arn(ctx, arn)[0], tags)

    def ready(self, ctx, resource):
        if resource.raw.get("State", {}).get("Code") != "active":
            self._wait_active(ctx, resource.id)
            resource.raw["State"] = {"Code": "active"}

    def _wait_active(self, ctx, arn):
        ctx.wait("elbv2", "load_balancer_available", LoadBalancerArns=[arn], timeout=self.create_timeout,
                 what="load balancer to become active (2-5 minutes on AWS)")

    def update(self, ctx, resource, apply):
        balancer = resource.raw
        if (balancer.get("Scheme"), balancer.get("Type")) != ("internet-facing", "application"):
            raise DriftConflict(
                f"load balancer {balancer['LoadBalancerName']} is {balancer.get('Scheme')} "
                f"{balancer.get('Type')}, the stack needs an internet-facing application load balancer; "
                "neither can be changed in place",
                hint="delete it (or `provision down`) and run `provision up` again")
        # Adopted mid-creation (an interrupted run): `ready` finishes the wait the last run started.
        changes = super().update(ctx, resource, apply)
        elb = ctx.client("elbv2")
        live = {a["Key"]: a["Value"] for a in
                elb.describe_load_balancer_attributes(LoadBalancerArn=resource.id)["Attributes"]}
        differ = {k: v for k, v in ATTRIBUTES.items() if live.get(k) != v}
        changes += [f"set {k} to {v} (was {live.get(k)})" for k, v in differ.items()]
        if apply and differ:
            elb.modify_load_balancer_attributes(LoadBalancerArn=resource.id,
                                                Attributes=[{"Key": k, "Value": v} for k, v in differ.items()])
        if all(ctx.dep(s) is not None for s in SUBNETS):
            have = sorted(z["SubnetId"] for z in balancer.get("AvailabilityZones", []))
            if have != self._subnets(ctx):
                changes.append(f"set subnets to {', '.join(self._subnets(ctx))} (was {', '.join(have)})")
                if apply:
                    elb.set_subnets(LoadBalancerArn=resource.id, Subnets=self._subnets(ctx))
        group = ctx.dep("alb-security-group")
        if group is not None and balancer.get("SecurityGroups", []) != [group.id]:
            changes.append(f"set security groups to {group.id} (was {', '.join(balancer.get('SecurityGroups', []))})")
            if apply:
                elb.set_security_groups(LoadBalancerArn=resource.id, SecurityGroups=[group.id])
        return changes

    def delete(self, ctx, resource):
        elb = ctx.client("elbv2")
        elb.delete_load_balancer(LoadBalancerArn=resource.id)
        ctx.wait("elbv2", "load_balancers_deleted", LoadBalancerArns=[resource.id], timeout=self.delete_timeout,
                 what="load balancer to be deleted")
        # Its network interfaces outlive it by minutes, and until they are released AWS refuses to
        # delete its subnets and security group (DependencyViolation). They are named after it:
        # "ELB app/<name>/<id>", the last parts of its ARN.
        ctx.wait("ec2", "NetworkInterfacesReleased", timeout="dependency",
                 Filters=[{"Name": "description", "Values": [interface_description(resource.id)]}],
                 what="load balancer's network interfaces to be released (minutes on AWS)")

    def outputs(self, resource):
        dns = resource.attrs.get("dns_name")
        return {"alb_dns_name": dns, "url": f"https://{dns}"}

    def describe(self, resource):
        return f"{resource.raw.get('State', {}).get('Code', '?')}, {resource.attrs.get('dns_name')}"


def interface_description(arn: str) -> str:
    """The description AWS gives a load balancer's network interfaces: "ELB app/<name>/<id>"."""
    return "ELB " + arn.split(":loadbalancer/", 1)[1]
