from provisioner.errors import DriftConflict
from provisioner.registry import Ec2Step, register


@register
class NatGateway(Ec2Step):
    """Lets the private instances reach the internet (packages, images). The most expensive piece
    of the network tier: billed per hour plus per GB, so one by default, one per zone with
    --nat-per-az for zone-failure tolerance."""

    kind = "nat_gateway"
    gone_codes = frozenset({"InvalidNatGatewayID.NotFound", "NatGatewayNotFound"})
    aws_type = "AWS::EC2::NatGateway"
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
        nat = ctx.retry("eventual-consistency", ctx.ec2.create_nat_gateway,
                        SubnetId=ctx.dep(f"public-subnet-{self.index + 1}").id,
                        AllocationId=ctx.dep(f"nat-eip-{self.index + 1}").id,
                        ConnectivityType="public", ClientToken=ctx.client_token(self.name),
                        TagSpecifications=ctx.tag_specifications("natgateway", self.name))["NatGateway"]
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
        ctx.wait("ec2", "nat_gateway_available", NatGatewayIds=[nat_id], timeout="nat-gateway",
                 what="NAT gateway to become available (1-5 minutes on AWS)")

    def delete(self, ctx, resource):
        ctx.ec2.delete_nat_gateway(NatGatewayId=resource.id)
        ctx.wait("ec2", "nat_gateway_deleted", NatGatewayIds=[resource.id], timeout="nat-gateway",
                 what="NAT gateway to be deleted (about a minute on AWS)")

    def outputs(self, resource):
        return {f"nat_gateway_{self.index + 1}_id": resource.id}

    def describe(self, resource):
        return f"{resource.raw.get('State', '')}, public IP {resource.attrs.get('public_ip')}"
