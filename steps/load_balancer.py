from provisioner.errors import DriftConflict
from provisioner.registry import register

from .elbv2 import ElbStep, described, load_balancer_name

SUBNETS = ("public-subnet-1", "public-subnet-2")
ATTRIBUTES = {
    # Requests with malformed headers are dropped at the edge instead of reaching the app
    # (request smuggling); AWS Security Hub flags ALBs without it (ELB.4).
    "routing.http.drop_invalid_header_fields.enabled": "true",
    "routing.http2.enabled": "true",
    # The tool owns the load balancer and `down` must be able to delete it.
    "deletion_protection.enabled": "false",
}


@register
class LoadBalancer(ElbStep):
    """The internet-facing Application Load Balancer over both public subnets."""

    kind = "load_balancer"
    gone_codes = frozenset({"LoadBalancerNotFound"})
    aws_type = "AWS::ElasticLoadBalancingV2::LoadBalancer"
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
        self._wait_active(ctx, arn)
        return self.created(self.by_arn(ctx, arn)[0], tags)

    def _wait_active(self, ctx, arn):
        ctx.wait("elbv2", "load_balancer_available", LoadBalancerArns=[arn], timeout="load-balancer",
                 what="load balancer to become active (2-5 minutes on AWS)")

    def update(self, ctx, resource, apply):
        balancer = resource.raw
        if (balancer.get("Scheme"), balancer.get("Type")) != ("internet-facing", "application"):
            raise DriftConflict(
                f"load balancer {balancer['LoadBalancerName']} is {balancer.get('Scheme')} "
                f"{balancer.get('Type')}, the stack needs an internet-facing application load balancer; "
                "neither can be changed in place",
                hint="delete it (or `provision down`) and run `provision up` again")
        changes = super().update(ctx, resource, apply)
        elb = ctx.client("elbv2")
        if balancer.get("State", {}).get("Code") == "provisioning" and apply:
            # Adopted mid-creation (an interrupted run): finish the wait the last run started.
            self._wait_active(ctx, resource.id)
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
        ctx.wait("elbv2", "load_balancers_deleted", LoadBalancerArns=[resource.id], timeout="load-balancer",
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
