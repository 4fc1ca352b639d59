from provisioner.registry import Ec2Step, register


@register
class ElasticIp(Ec2Step):
    """The NAT gateway's public address. Billed per hour whether used or not, so `down` must
    release it, and only after the NAT gateway has let go of it."""

    kind = "elastic_ip"
    gone_codes = frozenset({"InvalidAllocationID.NotFound"})
    aws_type = "AWS::EC2::EIP"
    describe_operation, result_key = "describe_addresses", "Addresses"
    id_field, id_filter, tag_resource_type = "AllocationId", "allocation-id", "elastic-ip"

    def __init__(self, index: int):
        super().__init__(f"nat-eip-{index + 1}")
        self.index = index

    @classmethod
    def instances(cls, config):
        return [cls(i) for i in range(config.nat_count)]

    def attrs(self, item):
        return {"public_ip": item.get("PublicIp")}

    def create(self, ctx):
        # AllocateAddress has no ClientToken: a retried allocation could leak an address, which is
        # why the tags go on at allocation, where the next run (or `down`) finds it.
        address = ctx.ec2.allocate_address(Domain="vpc",
                                           TagSpecifications=ctx.tag_specifications("elastic-ip", self.name))
        return self.to_resource(address)

    def delete(self, ctx, resource):
        ctx.wait("ec2", "AddressDisassociated", AllocationIds=[resource.id], timeout="dependency",
                 what=f"address {resource.attrs.get('public_ip')} to be released by the NAT gateway")
        ctx.retry("dependency", ctx.ec2.release_address, AllocationId=resource.id)

    def outputs(self, resource):
        return {f"nat_public_ip_{self.index + 1}": resource.attrs.get("public_ip")}

    def describe(self, resource):
        return resource.attrs.get("public_ip") or ""
