"""The cache subnet group: the two data subnets, one per zone, that ElastiCache places the
replication group's nodes in."""
from provisioner.engine.context import Resource
from provisioner.engine.kinds import FREE, Iam, ItemTags, Listing, actions
from provisioner.engine.registry import NamedStep, register
from provisioner.engine.retries import error_code, lookup

SUBNET_GROUP_ARN = "arn:{partition}:elasticache:{region}:{account}:subnetgroup:{stack}-cache"
# ElastiCache answers a tag read of a resource it has never had tags for with an empty list; a
# subnet group deleted between the list and the tag read is CacheSubnetGroupNotFoundFault (gone).
ELASTICACHE_TAGS = ItemTags("list_tags_for_resource", "ResourceName", "TagList")


def cache_name(ctx) -> str:
    """The replication group's and its subnet group's name. ElastiCache lowercases names and
    caps a replication group id at 40 characters; the stack's name (at most 23, lowercase) fits."""
    return f"{ctx.stack}-cache"


@register
class CacheSubnetGroup(NamedStep):
    """Free. Deleted only once no replication group uses it (CacheSubnetGroupInUse), which the
    graph gives: the cache depends on it."""

    kind = "cache_subnet_group"
    # While a replication group, one still deleting too, uses it.
    in_use_codes = frozenset({"CacheSubnetGroupInUse"})
    aws_type = "AWS::ElastiCache::SubnetGroup"
    gone_codes = frozenset({"CacheSubnetGroupNotFoundFault"})
    listing = Listing("cache_subnet_group", "elasticache", "describe_cache_subnet_groups", "CacheSubnetGroups", "ARN",
                      label="cache subnet groups", tags=ELASTICACHE_TAGS, price=FREE,
                      candidate=lambda ctx, i: i["CacheSubnetGroupName"].endswith("-cache"))
    iam = Iam(create=(actions("elasticache:CreateCacheSubnetGroup", "elasticache:AddTagsToResource",
                              on=SUBNET_GROUP_ARN),),
              read=(actions("elasticache:DescribeCacheSubnetGroups", "elasticache:ListTagsForResource"),),
              change=(actions("elasticache:ModifyCacheSubnetGroup", "elasticache:AddTagsToResource",
                              on=SUBNET_GROUP_ARN),),
              delete=(actions("elasticache:DeleteCacheSubnetGroup", on=SUBNET_GROUP_ARN),))

    def __init__(self):
        super().__init__("cache-subnet-group", depends_on=("data-subnet-1", "data-subnet-2"))

    @classmethod
    def instances(cls, config):
        return [cls()] if config.cache != "none" else []

    def _subnet_ids(self, ctx) -> list[str]:
        return [ctx.dep(f"data-subnet-{n}").id for n in (1, 2) if ctx.dep(f"data-subnet-{n}")]

    what = "cache subnet group"

    def resource_name(self, ctx):
        return cache_name(ctx)

    def read(self, ctx, name):
        elasticache = ctx.client("elasticache")
        found = lookup(elasticache.describe_cache_subnet_groups, CacheSubnetGroupName=name, gone=self.gone_codes)
        if not found or not found["CacheSubnetGroups"]:
            return None, []
        group = found["CacheSubnetGroups"][0]
        return group, elasticache.list_tags_for_resource(ResourceName=group["ARN"]).get("TagList", [])

    @staticmethod
    def to_resource(group, tags):
        return Resource(id=group["CacheSubnetGroupName"], attrs={"arn": group["ARN"]}, raw={**group, "Tags": tags})

    def create(self, ctx):
        from botocore.exceptions import ClientError

        try:
            group = ctx.retry("eventual-consistency", ctx.client("elasticache").create_cache_subnet_group,
                              CacheSubnetGroupName=cache_name(ctx),
                              CacheSubnetGroupDescription=f"{ctx.stack}: the cache's data subnets",
                              SubnetIds=self._subnet_ids(ctx), Tags=ctx.tags(self.name))["CacheSubnetGroup"]
        except ClientError as e:
            if error_code(e) == "CacheSubnetGroupAlreadyExists":
                raise self.taken(ctx) from None
            raise
        return self.to_resource(group, ctx.tags(self.name))

    def update(self, ctx, resource, apply):
        elasticache = ctx.client("elasticache")
        changes = ctx.converge_tags(resource.raw.get("Tags", []), self.name, apply, lambda missing: (
            elasticache.add_tags_to_resource(ResourceName=resource.attrs["arn"], Tags=missing)))
        live = sorted(s["SubnetIdentifier"] for s in resource.raw.get("Subnets", []))
        wanted = sorted(self._subnet_ids(ctx))
        if wanted and live != wanted:
            changes.append(f"subnets {', '.join(live) or '(none)'} -> {', '.join(wanted)}")
            if apply:
                elasticache.modify_cache_subnet_group(CacheSubnetGroupName=resource.id, SubnetIds=wanted)
        return changes

    def delete(self, ctx, resource):
        # The cache is deleted (and waited until gone) first; a replication group that another
        # run is still deleting holds it for minutes more.
        ctx.retry("dependency", ctx.client("elasticache").delete_cache_subnet_group, CacheSubnetGroupName=resource.id)

    def describe(self, resource):
        return ", ".join(s["SubnetIdentifier"] for s in resource.raw.get("Subnets", []))
