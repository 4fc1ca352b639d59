"""The database's subnet group: the two data subnets, one per zone (RDS needs two zones even for
a single-AZ instance, so that a Multi-AZ standby or a restore has somewhere to go)."""

from provisioner.engine.context import Resource

from provisioner.engine.kinds import FREE, Iam, ItemTags, Listing, actions
from provisioner.engine.registry import NamedStep, register
from provisioner.engine.retries import error_code, lookup

from provisioner.shape.config import ZONE_COUNT

SUBNET_GROUP_ARN = "arn:{partition}:rds:{region}:{account}:subgrp:{stack}-*"
DATA_SUBNETS = tuple(f"data-subnet-{i + 1}" for i in range(ZONE_COUNT))


def rds_tags(rds, arn: str) -> list[dict]:
    return rds.list_tags_for_resource(ResourceName=arn).get("TagList", [])


@register
class DatabaseSubnetGroup(NamedStep):
    """Named <stack>-database; its subnets converge (a group may change subnets in place)."""

    kind = "db_subnet_group"
    gone_codes = frozenset({"DBSubnetGroupNotFoundFault"})
    not_found_codes = frozenset({"DBSubnetGroupNotFoundFault"})
    # While an instance (one still deleting too) is in the group.
    in_use_codes = frozenset({"InvalidDBSubnetGroupStateFault"})
    aws_type = "AWS::RDS::DBSubnetGroup"
    listing = Listing("db_subnet_group", "rds", "describe_db_subnet_groups", "DBSubnetGroups", "DBSubnetGroupArn",
                      label="DB subnet groups", tags=ItemTags("list_tags_for_resource", "ResourceName", "TagList"),
                      price=FREE)
    iam = Iam(create=(actions("rds:CreateDBSubnetGroup", "rds:AddTagsToResource", on=SUBNET_GROUP_ARN),),
              read=(actions("rds:DescribeDBSubnetGroups", "rds:ListTagsForResource"),),
              change=(actions("rds:ModifyDBSubnetGroup", "rds:AddTagsToResource", on=SUBNET_GROUP_ARN),),
              delete=(actions("rds:DeleteDBSubnetGroup", on=SUBNET_GROUP_ARN),))

    def __init__(self):
        super().__init__("database-subnet-group", depends_on=DATA_SUBNETS)

    @classmethod
    def instances(cls, config):
        return [cls()] if config.database != "none" else []

    what = "DB subnet group"

    def resource_name(self, ctx) -> str:
        return f"{ctx.stack}-database"

    def read(self, ctx, name):
        rds = ctx.client("rds")
        found = lookup(rds.describe_db_subnet_groups, DBSubnetGroupName=name, gone=self.gone_codes)
        if not found or not found["DBSubnetGroups"]:
            return None, []
        group = found["DBSubnetGroups"][0]
        return group, rds_tags(rds, group["DBSubnetGroupArn"])

    @staticmethod
    def to_resource(group, tags):
        return Resource(id=group["DBSubnetGroupName"],
                        attrs={"arn": group["DBSubnetGroupArn"],
                               "subnets": sorted(s["SubnetIdentifier"] for s in group.get("Subnets", []))},
                        raw={**group, "Tags": tags})

    def _subnet_ids(self, ctx):
        return [ctx.dep(s).id for s in DATA_SUBNETS]

    def create(self, ctx):
        from botocore.exceptions import ClientError

        rds = ctx.client("rds")
        try:
            group = ctx.retry("eventual-consistency", rds.create_db_subnet_group,
                              DBSubnetGroupName=self.resource_name(ctx),
                              DBSubnetGroupDescription=f"{ctx.stack}: the data subnets",
                              SubnetIds=self._subnet_ids(ctx), Tags=ctx.tags(self.name))["DBSubnetGroup"]
        except ClientError as e:
            if error_code(e) == "DBSubnetGroupAlreadyExists":
                raise self.taken(ctx) from None
            raise
        return self.to_resource(group, ctx.tags(self.name))

    def update(self, ctx, resource, apply):
        rds = ctx.client("rds")
        changes = ctx.converge_tags(resource.raw.get("Tags", []), self.name, apply, lambda missing: rds.add_tags_to_resource(
            ResourceName=resource.attrs["arn"], Tags=missing))
        want = sorted(self._subnet_ids(ctx))
        if resource.attrs["subnets"] != want:
            changes.append(f"subnets {', '.join(resource.attrs['subnets'])} -> {', '.join(want)}")
            if apply:
                rds.modify_db_subnet_group(DBSubnetGroupName=resource.id, SubnetIds=want)
        return changes

    def delete(self, ctx, resource):
        # RDS refuses while an instance (one still deleting too) is in the group.
        ctx.retry("dependency", ctx.client("rds").delete_db_subnet_group, DBSubnetGroupName=resource.id)

    def outputs(self, resource):
        return {}

    def describe(self, resource):
        return ", ".join(resource.attrs.get("subnets", []))
