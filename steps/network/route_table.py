from provisioner.engine.kinds import FREE, Iam, actions, ec2_listing
from provisioner.engine.registry import Ec2Step, register

DEFAULT_ROUTE = "0.0.0.0/0"


@register
class RouteTable(Ec2Step):
    """The public table sends 0.0.0.0/0 to the internet gateway; each private table sends it to
    a NAT gateway (one table per NAT gateway, so --nat-per-az keeps each zone's traffic in-zone).
    The data table (with a database or a cache) has the VPC's local route only: nothing in the
    data subnets can reach the internet or be reached from it. It is the subnets' own table, not
    the VPC's main one, so a route someone adds to the main table does not reach them."""

    kind = "route_table"
    gone_codes = frozenset({"InvalidRouteTableID.NotFound"})
    not_found_codes = frozenset({"InvalidRouteTableID.NotFound"})
    aws_type = "AWS::EC2::RouteTable"
    listing = ec2_listing("route_table", "describe_route_tables", "RouteTables", "RouteTableId", price=FREE)
    iam = Iam(create=(actions("ec2:CreateRouteTable", "ec2:CreateTags", "ec2:CreateRoute"),),
              read=(actions("ec2:DescribeRouteTables"),),
              change=(actions("ec2:CreateRoute", "ec2:ReplaceRoute", "ec2:DeleteRoute", "ec2:CreateTags"),),
              delete=(actions("ec2:DeleteRouteTable"),))
    describe_operation, result_key = "describe_route_tables", "RouteTables"
    id_field, id_filter, tag_resource_type = "RouteTableId", "route-table-id", "route-table"

    def __init__(self, name: str, target_step: str | None, target_param: str | None, depends_on):
        super().__init__(name, depends_on=("vpc", *depends_on))
        self.target_step, self.target_param = target_step, target_param

    @classmethod
    def instances(cls, config):
        tables = [cls("public-route-table", "internet-gateway", "GatewayId", ("internet-gateway-attachment",))]
        for i in range(config.nat_count):
            tables.append(cls(f"private-route-table-{i + 1}", f"nat-gateway-{i + 1}", "NatGatewayId",
                              (f"nat-gateway-{i + 1}",)))
        if config.data_subnets:
            tables.append(cls("data-route-table", None, None, ()))
        return tables

    def create(self, ctx):
        table = ctx.retry("eventual-consistency", ctx.ec2.create_route_table, VpcId=ctx.dep("vpc").id,
                          TagSpecifications=ctx.tag_specifications("route-table", self.name))["RouteTable"]
        if self.target_step:
            self._set_default_route(ctx, table["RouteTableId"], replace=False)
        return self.to_resource(table)

    def update(self, ctx, resource, apply):
        changes = super().update(ctx, resource, apply)
        route = next((r for r in resource.raw.get("Routes", []) if r.get("DestinationCidrBlock") == DEFAULT_ROUTE), None)
        if self.target_step is None:
            if route is not None:
                changes.append(f"remove route {DEFAULT_ROUTE} (the data subnets have no way out)")
                if apply:
                    ctx.ec2.delete_route(RouteTableId=resource.id, DestinationCidrBlock=DEFAULT_ROUTE)
            return changes
        target = ctx.dep(self.target_step)
        if route is None:
            changes.append(f"add route {DEFAULT_ROUTE} -> {self.target_step}")
            if apply:
                self._set_default_route(ctx, resource.id, replace=False)
        elif target is None or route.get(self.target_param) != target.id or route.get("State") == "blackhole":
            changes.append(f"point route {DEFAULT_ROUTE} at {self.target_step}"
                           + (f" ({target.id})" if target else ""))
            if apply:
                self._set_default_route(ctx, resource.id, replace=True)
        return changes

    def _set_default_route(self, ctx, table_id, replace):
        call = ctx.ec2.replace_route if replace else ctx.ec2.create_route
        ctx.retry("eventual-consistency", call, RouteTableId=table_id, DestinationCidrBlock=DEFAULT_ROUTE,
                  **{self.target_param: ctx.dep(self.target_step).id})

    def delete(self, ctx, resource):
        ctx.retry("dependency", ctx.ec2.delete_route_table, RouteTableId=resource.id)

    def outputs(self, resource):
        return {f"{self.name.replace('-', '_')}_id": resource.id}

    def describe(self, resource):
        routes = resource.raw.get("Routes", [])
        default = next((r for r in routes if r.get("DestinationCidrBlock") == DEFAULT_ROUTE), {})
        if self.target_step is None:
            return "local routes only" if not default else f"{DEFAULT_ROUTE} -> {default.get('GatewayId') or default.get('NatGatewayId')} (to be removed)"
        return f"{DEFAULT_ROUTE} -> {default.get(self.target_param, 'none')} ({default.get('State', 'missing')})"
