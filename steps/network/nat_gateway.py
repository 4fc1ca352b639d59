from collections import Counter

from provisioner.engine.errors import AwsFailure, DriftConflict
from provisioner.engine.retries import error_code
from provisioner.engine.kinds import Iam, PriceKey, Quota, UsageNote, actions, ec2_listing
from provisioner.account.pricing import price_of
from provisioner.account.quotas import FILTER_VALUES_MAX, still_by_kind
from provisioner.engine.registry import Ec2Step, register


# Billed from creation until deleted; AWS lists the deleted ones for a while (no longer billing).
BILLING_STATES = ("pending", "available")
GONE_STATES = ("deleting", "deleted", "failed")


def _products(products, region):
    return products("AmazonEC2", productFamily="NAT Gateway", regionCode=region)


NAT_GATEWAY_HOUR = PriceKey("nat_gateway_hour", "NAT gateway", "hour",
                            lambda products, region, types: price_of(_products(products, region), "NatGateway-Hours"))


def data_processing(products, region):
    per_gb = price_of(_products(products, region), "NatGateway-Bytes")
    return None if per_gb is None else f"${per_gb:g} per GB through a NAT gateway (both directions)"


def nat_gateway_charges(item, prices, region):
    if (getattr(item, "detail", None) or {}).get("state", "available") not in BILLING_STATES:
        return [], []
    return [("NAT gateway", 1, "gateway", prices["nat_gateway_hour"])], []


def nat_gateway_detail(item):
    return {"state": item.get("State"), "vpc_id": item.get("VpcId")}


def nat_gateways_in_use(reads):
    """Per zone, the zone of each gateway's subnet (the NAT gateway itself does not say)."""
    gateways = reads.pages("ec2", "describe_nat_gateways", "NatGateways",
                           Filters=[{"Name": "state", "Values": list(BILLING_STATES)}])
    gateways = [g for g in gateways if g.get("State") in BILLING_STATES and g.get("SubnetId")]
    subnet_ids = sorted({g["SubnetId"] for g in gateways})
    zone_of = {}
    for start in range(0, len(subnet_ids), FILTER_VALUES_MAX):
        # A filter, not SubnetIds=: a subnet deleted meanwhile is left out, not an error.
        for subnet in reads.pages("ec2", "describe_subnets", "Subnets", Filters=[
                {"Name": "subnet-id", "Values": subnet_ids[start:start + FILTER_VALUES_MAX]}]):
            zone_of[subnet["SubnetId"]] = subnet["AvailabilityZone"]
    return dict(Counter(zone_of[g["SubnetId"]] for g in gateways if g["SubnetId"] in zone_of))


def nat_gateways_needed(reads):
    # One NAT gateway in the first zone, or one in each zone with --nat-per-az.
    return {zone: 1 for zone in reads.zones[:reads.config.nat_count]}


NAT_GATEWAYS = Quota("nat_gateways", "NAT gateways per Availability Zone", "vpc", "L-FE5A380F",
                     nat_gateways_in_use, nat_gateways_needed, still_by_kind("nat_gateway", lambda c: c.nat_count))


@register
class NatGateway(Ec2Step):
    """Lets the private instances reach the internet (packages, images). The most expensive piece
    of the network tier: billed per hour plus per GB, so one by default, one per zone with
    --nat-per-az for zone-failure tolerance."""

    kind = "nat_gateway"
    gone_codes = frozenset({"InvalidNatGatewayID.NotFound", "NatGatewayNotFound"})
    not_found_codes = frozenset({"InvalidNatGatewayID.NotFound", "NatGatewayNotFound"})
    # NAT gateways take 1-5 minutes to become available and about a minute to be deleted.
    create_timeout = delete_timeout = 900
    aws_type = "AWS::EC2::NatGateway"
    listing = ec2_listing("nat_gateway", "describe_nat_gateways", "NatGateways", "NatGatewayId", label="NAT gateways",
                          created_field="CreateTime", gone=lambda i: i.get("State") in GONE_STATES,
                          detail=nat_gateway_detail, price=nat_gateway_charges, price_keys=(NAT_GATEWAY_HOUR,),
                          usage_notes=(UsageNote("NAT data processing", data_processing),))
    quotas = (NAT_GATEWAYS,)
    iam = Iam(create=(actions("ec2:CreateNatGateway", "ec2:CreateTags"),), read=(actions("ec2:DescribeNatGateways"),),
              change=(actions("ec2:CreateTags"),), delete=(actions("ec2:DeleteNatGateway"),))
    describe_operation, result_key = "describe_nat_gateways", "NatGateways"
    id_field, id_filter, tag_resource_type = "NatGatewayId", "nat-gateway-id", "natgateway"

    def __init__(self, index: int):
        # The internet gateway must be attached first: AWS refuses a public NAT gateway in a VPC
        # without one, and the reversed order deletes the NAT (and frees its address) before the
        # detach, which AWS refuses while public addresses are mapped.
        super().__init__(f"nat-gateway-{index + 1}",
                         depends_on=(f"nat-eip-{index + 1}", f"public-subnet-{index + 1}",
                                     "internet-gateway-attachment"))
        self.index = index

    @classmethod
    def instances(cls, config):
        return [cls(i) for i in range(config.nat_count)]

    def is_live(self, item):
        # Deleted gateways stay listed for about an hour; failed ones cost nothing and go alone.
        return item["State"] not in ("deleted", "failed")

    def attrs(self, item):
        addresses = item.get("NatGatewayAddresses") or [{}]
        return {"subnet_id": item["SubnetId"], "public_ip": addresses[0].get("PublicIp")}

    def create(self, ctx):
        from botocore.exceptions import ClientError

        for token in ctx.client_tokens(self.name):
            try:
                nat = ctx.retry("eventual-consistency", ctx.ec2.create_nat_gateway,
                                SubnetId=ctx.dep(f"public-subnet-{self.index + 1}").id,
                                AllocationId=ctx.dep(f"nat-eip-{self.index + 1}").id,
                                ConnectivityType="public", ClientToken=token,
                                TagSpecifications=ctx.tag_specifications("natgateway", self.name))["NatGateway"]
            except ClientError as e:
                # The token made a gateway with other parameters (a new Elastic IP since).
                if error_code(e) == "IdempotentParameterMismatch":
                    continue
                raise
            # A replayed token answers the gateway it made first, even one deleted by hand since
            # (AWS lists it as deleted for about an hour): waiting on it would fail.
            # By id, in any state: a new gateway not listed yet is NatGatewayNotFound, retried.
            now = ctx.retry("eventual-consistency", ctx.ec2.describe_nat_gateways,
                            NatGatewayIds=[nat["NatGatewayId"]])["NatGateways"]
            if not now or now[0]["State"] not in GONE_STATES:
                break
        else:
            raise AwsFailure("CreateNatGateway answered every client token with a former NAT gateway",
                             hint="run `provision up` again")
        self._wait_available(ctx, nat["NatGatewayId"])
        return self.to_resource(self._describe(ctx, [{"Name": "nat-gateway-id", "Values": [nat["NatGatewayId"]]}])[0])

    def update(self, ctx, resource, apply):
        changes = super().update(ctx, resource, apply)
        state = resource.raw["State"]
        if state == "deleting":
            raise DriftConflict(f"NAT gateway {resource.id} is being deleted",
                                hint="wait a minute for it to go, then run `provision up` again")
        if state == "pending" and apply:
            # Adopted mid-creation (an interrupted run): finish the wait the last run started.
            self._wait_available(ctx, resource.id)
        return changes

    def _wait_available(self, ctx, nat_id):
        ctx.wait("ec2", "nat_gateway_available", NatGatewayIds=[nat_id], timeout=self.create_timeout,
                 what="NAT gateway to become available (1-5 minutes on AWS)")

    def delete(self, ctx, resource):
        ctx.ec2.delete_nat_gateway(NatGatewayId=resource.id)
        ctx.wait("ec2", "nat_gateway_deleted", NatGatewayIds=[resource.id], timeout=self.delete_timeout,
                 what="NAT gateway to be deleted (about a minute on AWS)")

    def outputs(self, resource):
        return {f"nat_gateway_{self.index + 1}_id": resource.id}

    def describe(self, resource):
        return f"{resource.raw.get('State', '')}, public IP {resource.attrs.get('public_ip')}"
