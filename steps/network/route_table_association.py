from provisioner.shape.config import ZONE_COUNT
from provisioner.engine.context import Resource
from provisioner.engine.kinds import Iam, actions
from provisioner.engine.registry import Step, register


@register
class RouteTableAssociation(Step):
    """A subnet's link to its route table (a relationship: no tags; found through the subnet)."""

    kind = "route_table_association"
    gone_codes = frozenset({"InvalidAssociationID.NotFound"})
    not_found_codes = frozenset({"InvalidAssociationID.NotFound"})
    aws_type = "AWS::EC2::SubnetRouteTableAssociation"
    found_through = "route_table"
    iam = Iam(create=(actions("ec2:AssociateRouteTable"),), read=(actions("ec2:DescribeRouteTables"),),
              change=(actions("ec2:ReplaceRouteTableAssociation"),), delete=(actions("ec2:DisassociateRouteTable"),))
    tagged = False

    def __init__(self, subnet: str, table: str, others: tuple[str, ...] = ()):
        # `others`: the tables this subnet may be associated with instead. A stack built with
        # --nat-per-az and torn down without it (or found by tags, with every option's steps)
        # has private subnet 2 on private table 2 while this configuration says table 1.
        super().__init__(f"{subnet}-association", depends_on=(subnet, table), may_hold=others)
        self.subnet, self.table = subnet, table

    @classmethod
    def instances(cls, config):
        private_tables = tuple(f"private-route-table-{i + 1}" for i in range(config.nat_count))
        steps = [cls(f"public-subnet-{i + 1}", "public-route-table") for i in range(ZONE_COUNT)]
        for i in range(ZONE_COUNT):
            table = private_tables[min(i, config.nat_count - 1)]
            steps.append(cls(f"private-subnet-{i + 1}", table, tuple(t for t in private_tables if t != table)))
        if config.data_subnets:
            steps += [cls(f"data-subnet-{i + 1}", "data-route-table") for i in range(ZONE_COUNT)]
        return steps

    def find_all(self, ctx, known_id):
        subnet = ctx.dep(self.subnet)
        if subnet is None:
            return []
        tables = ctx.ec2.describe_route_tables(
            Filters=[{"Name": "association.subnet-id", "Values": [subnet.id]}])["RouteTables"]
        return [Resource(id=a["RouteTableAssociationId"], attrs={"route_table_id": a["RouteTableId"]})
                for t in tables for a in t.get("Associations", [])
                if a.get("SubnetId") == subnet.id and not a.get("Main")]

    def create(self, ctx):
        association = ctx.retry("eventual-consistency", ctx.ec2.associate_route_table,
                                SubnetId=ctx.dep(self.subnet).id, RouteTableId=ctx.dep(self.table).id)
        return Resource(id=association["AssociationId"], attrs={"route_table_id": ctx.dep(self.table).id})

    def update(self, ctx, resource, apply):
        table = ctx.dep(self.table)
        if table is None or resource.attrs["route_table_id"] == table.id:
            return []
        if apply:
            new = ctx.ec2.replace_route_table_association(AssociationId=resource.id, RouteTableId=table.id)
            resource.id, resource.attrs["route_table_id"] = new["NewAssociationId"], table.id
        return [f"move {self.subnet} to {self.table}"]

    def delete(self, ctx, resource):
        ctx.ec2.disassociate_route_table(AssociationId=resource.id)

    def describe(self, resource):
        return f"{self.subnet} -> {resource.attrs['route_table_id']}"
