from provisioner.engine.kinds import Iam, PriceKey, Quota, actions, ec2_listing
from provisioner.account.pricing import price_of
from provisioner.account.quotas import REGION_SCOPE, still_by_kind
from provisioner.engine.registry import Ec2Step, register


def public_ipv4_price(products, region, instance_types):
    # The public IPv4 charge has no product family of its own in AmazonVPC: read the region's
    # products and pick it by usage type.
    return price_of(products("AmazonVPC", regionCode=region), "PublicIPv4:InUseAddress")


# Every public IPv4 address: Elastic IPs, a load balancer's in each zone, the bastion's.
PUBLIC_IPV4_HOUR = PriceKey("public_ipv4_hour", "public IPv4 address (Elastic IP, each ALB zone)", "hour",
                            public_ipv4_price)


def elastic_ip_charges(item, prices, region):
    # Since February 2024 every public IPv4 address bills, associated or not.
    return [("public IPv4 address (Elastic IP)", 1, "address", prices["public_ipv4_hour"])], []


def elastic_ip_detail(item):
    return {"associated": bool(item.get("AssociationId"))}


def elastic_ips_in_use(reads):
    addresses = reads.pages("ec2", "describe_addresses", "Addresses")
    return {REGION_SCOPE: sum(1 for a in addresses if a.get("Domain", "vpc") == "vpc")}


def elastic_ips_needed(reads):
    return {REGION_SCOPE: reads.config.nat_count}  # one per NAT gateway


ELASTIC_IPS = Quota("elastic_ips", "EC2-VPC Elastic IPs", "ec2", "L-0263D0A3", elastic_ips_in_use, elastic_ips_needed,
                    still_by_kind("elastic_ip", lambda config: config.nat_count))


@register
class ElasticIp(Ec2Step):
    """The NAT gateway's public address. Billed per hour whether used or not, so `down` must
    release it, and only after the NAT gateway has let go of it."""

    kind = "elastic_ip"
    gone_codes = frozenset({"InvalidAllocationID.NotFound"})
    not_found_codes = frozenset({"InvalidAllocationID.NotFound"})
    aws_type = "AWS::EC2::EIP"
    listing = ec2_listing("elastic_ip", "describe_addresses", "Addresses", "AllocationId", label="Elastic IPs",
                          detail=elastic_ip_detail, price=elastic_ip_charges, price_keys=(PUBLIC_IPV4_HOUR,))
    quotas = (ELASTIC_IPS,)
    iam = Iam(create=(actions("ec2:AllocateAddress", "ec2:CreateTags"),), read=(actions("ec2:DescribeAddresses"),),
              change=(actions("ec2:CreateTags"),), delete=(actions("ec2:ReleaseAddress", "ec2:DescribeAddresses"),))
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
