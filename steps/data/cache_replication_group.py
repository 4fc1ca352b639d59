"""The cache: an ElastiCache Redis replication group, a primary and a replica in the stack's two
zones, encrypted in transit and at rest, behind an AUTH token. The app's REDIS_HOST and
REDIS_PORT are its primary endpoint."""
from provisioner.engine.context import Resource
from provisioner.engine.errors import DriftConflict
from provisioner.engine.kinds import Iam, Listing, PriceKey, actions
from provisioner.account.pricing import price_of
from provisioner.engine.registry import NamedStep, created, register
from provisioner.engine.retries import error_code, lookup

from steps.data.cache_subnet_group import ELASTICACHE_TAGS, SUBNET_GROUP_ARN, cache_name

REPLICATION_GROUP_ARN = "arn:{partition}:elasticache:{region}:{account}:replicationgroup:{stack}-cache"
CLUSTER_ARN = "arn:{partition}:elasticache:{region}:{account}:cluster:{stack}-cache-*"
# A primary and one replica: Multi-AZ with automatic failover needs at least one replica.
NODES = 2
REDIS_PORT = 6379
# Billed while it exists in any of these; AWS keeps a deleted group listed as "deleting".
GONE_STATES = ("deleting", "deleted", "create-failed")
# What cannot be changed in place once the group exists (encryption at rest never can, and the
# stack's security posture depends on the rest): `up` says so rather than run without it.
FIXED = {"TransitEncryptionEnabled": True, "AtRestEncryptionEnabled": True, "AuthTokenEnabled": True,
         "AutomaticFailover": "enabled", "MultiAZ": "enabled", "ClusterEnabled": False}
# The first replication group of an account makes ElastiCache's service-linked role.
ELASTICACHE_SERVICE_ROLE = actions(
    "iam:CreateServiceLinkedRole",
    on="arn:{partition}:iam::{account}:role/aws-service-role/elasticache.amazonaws.com/*",
    condition={"StringEquals": {"iam:AWSServiceName": "elasticache.amazonaws.com"}})


def _node_hour(products, region, types):
    from provisioner.shape.config import DEFAULT_CACHE_NODE_TYPE

    offers = products("AmazonElastiCache", instanceType=DEFAULT_CACHE_NODE_TYPE, regionCode=region,
                      cacheEngine="Redis")
    return {DEFAULT_CACHE_NODE_TYPE: price_of(offers, f"NodeUsage:{DEFAULT_CACHE_NODE_TYPE}")}


CACHE_NODE_HOUR = PriceKey("cache_node_hour", "ElastiCache node", "hour", _node_hour, per="node type",
                           missing="the Price List API has no Redis price for {type}; left out",
                           # us-east-1's figure until `provision prices --refresh` has one.
                           default={"cache.t4g.micro": 0.016})


def cache_charges(item, prices, region):
    detail = getattr(item, "detail", None) or {}
    if detail.get("status") in ("deleted", "create-failed"):
        return [], []
    node_type, nodes = detail.get("node_type"), detail.get("nodes") or NODES
    rate = (prices["cache_node_hour"] or {}).get(node_type) if node_type else None
    if rate is None:
        return [], [f"ElastiCache node type {node_type or '(unknown)'} has no price in {region}"]
    return [(f"ElastiCache {node_type}", nodes, "node", rate)], []


def cache_detail(item):
    return {"status": item.get("Status"), "node_type": item.get("CacheNodeType"),
            "nodes": len(item.get("MemberClusters") or []) or NODES}


def primary_endpoint(group: dict) -> dict:
    for node_group in group.get("NodeGroups") or []:
        if node_group.get("PrimaryEndpoint"):
            return node_group["PrimaryEndpoint"]
    return {}


def _key(ctx) -> dict:
    from steps.security.kms_key import stack_key_arn

    key = stack_key_arn(ctx)
    return {"KmsKeyId": key} if key else {}


@register
class Cache(NamedStep):
    """Created in 10-15 minutes on AWS and deleted in 5-10; its nodes hold network interfaces in
    the data subnets and the cache group until it is gone, so both wait for its deletion."""

    kind = "replication_group"
    # The app needs its identifier only: the backend looks its address up once it has one.
    serves_app = True
    aws_type = "AWS::ElastiCache::ReplicationGroup"
    gone_codes = frozenset({"ReplicationGroupNotFoundFault", "CacheClusterNotFound"})
    create_timeout = 1800
    delete_timeout = 1800
    listing = Listing("replication_group", "elasticache", "describe_replication_groups", "ReplicationGroups", "ARN",
                      label="ElastiCache replication groups", tags=ELASTICACHE_TAGS,
                      created_field="ReplicationGroupCreateTime", detail=cache_detail,
                      gone=lambda i: i.get("Status") == "deleted",
                      candidate=lambda ctx, i: i["ReplicationGroupId"].endswith("-cache"),
                      price=cache_charges, price_keys=(CACHE_NODE_HOUR,))
    iam = Iam(create=(actions("elasticache:CreateReplicationGroup", "elasticache:AddTagsToResource",
                              on=(REPLICATION_GROUP_ARN, CLUSTER_ARN, SUBNET_GROUP_ARN,
                                  "arn:{partition}:elasticache:{region}:{account}:parametergroup:*",
                                  "arn:{partition}:elasticache:{region}:{account}:securitygroup:*")),
                      # The nodes' interfaces are made in the caller's name.
                      actions("ec2:CreateNetworkInterface", "ec2:DescribeSubnets", "ec2:DescribeVpcs",
                              "ec2:DescribeSecurityGroups"),
                      ELASTICACHE_SERVICE_ROLE),
              read=(actions("elasticache:DescribeReplicationGroups", "elasticache:DescribeCacheClusters",
                            "elasticache:ListTagsForResource"),),
              change=(actions("elasticache:AddTagsToResource", "elasticache:ModifyReplicationGroup",
                              on=(REPLICATION_GROUP_ARN, CLUSTER_ARN)),),
              delete=(actions("elasticache:DeleteReplicationGroup", on=(REPLICATION_GROUP_ARN, CLUSTER_ARN)),))

    def __init__(self, audit: bool = False):
        # --audit: encrypted at rest with the stack's key (its ARN only).
        super().__init__("cache", depends_on=("cache-subnet-group", "cache-security-group", "cache-auth-token",
                                              *((created("kms-key"),) if audit else ())))

    @classmethod
    def instances(cls, config):
        return [cls(config.audit)] if config.cache != "none" else []

    # -- find --------------------------------------------------------------------------------
    what = "ElastiCache replication group"

    def resource_name(self, ctx):
        return cache_name(ctx)

    def read(self, ctx, group_id):
        elasticache = ctx.client("elasticache")
        found = lookup(elasticache.describe_replication_groups, ReplicationGroupId=group_id, gone=self.gone_codes)
        if not found or not found["ReplicationGroups"]:
            return None, []
        group = found["ReplicationGroups"][0]
        tags = lookup(elasticache.list_tags_for_resource, ResourceName=group["ARN"], gone=self.gone_codes)
        return group, (tags or {}).get("TagList", [])

    def is_live(self, group):
        return group.get("Status") != "deleted"

    @staticmethod
    def to_resource(group, tags):
        endpoint = primary_endpoint(group)
        return Resource(id=group["ReplicationGroupId"],
                        attrs={"arn": group["ARN"], "host": endpoint.get("Address"), "port": endpoint.get("Port")},
                        raw={**group, "Tags": tags})

    # -- create ------------------------------------------------------------------------------
    def create(self, ctx):
        from botocore.exceptions import ClientError

        secret = ctx.dep("cache-auth-token")
        # Read here and handed to AWS only: the token never reaches state, outputs or the log.
        token = ctx.client("secretsmanager").get_secret_value(SecretId=secret.id)["SecretString"]
        try:
            group = ctx.retry(
                "eventual-consistency", ctx.client("elasticache").create_replication_group,
                ReplicationGroupId=cache_name(ctx), ReplicationGroupDescription=f"{ctx.stack}: the app's cache",
                Engine="redis", CacheNodeType=ctx.config.cache_node_type, NumCacheClusters=NODES,
                AutomaticFailoverEnabled=True, MultiAZEnabled=True,
                # The primary in the first zone, the replica in the second: a zone's loss fails over.
                PreferredCacheClusterAZs=list(ctx.config.zones[:NODES]),
                TransitEncryptionEnabled=True, AtRestEncryptionEnabled=True, AuthToken=token,
                SecurityGroupIds=[ctx.dep("cache-security-group").id],
                CacheSubnetGroupName=ctx.dep("cache-subnet-group").id, Port=REDIS_PORT,
                Tags=ctx.tags(self.name), **_key(ctx))["ReplicationGroup"]
        except ClientError as e:
            if error_code(e) == "ReplicationGroupAlreadyExists":
                raise self.taken(ctx) from None
            raise
        return self.to_resource(group, ctx.tags(self.name))

    def ready(self, ctx, resource):
        if resource.raw.get("Status") != "available" or not resource.attrs.get("host"):
            ctx.wait("elasticache", "replication_group_available", ReplicationGroupId=resource.id,
                     timeout=self.create_timeout, what="cache to become available (10-15 minutes on AWS)")
            group, tags = self.read(ctx, resource.id)
            fresh = self.to_resource(group, tags)
            resource.attrs.update(fresh.attrs)
            resource.raw.update(fresh.raw)

    # -- converge ----------------------------------------------------------------------------
    def update(self, ctx, resource, apply):
        group = resource.raw
        if group.get("Status") in GONE_STATES:
            raise DriftConflict(f"replication group {resource.id} is {group.get('Status')}",
                                hint="wait until it is gone (minutes), then run `provision up` again")
        differ = {k: group.get(k) for k, v in FIXED.items() if k in group and group.get(k) != v}
        if differ:
            raise DriftConflict(
                f"replication group {resource.id} has {', '.join(f'{k}={v}' for k, v in differ.items())}; the stack "
                "needs it encrypted in transit and at rest, with an AUTH token and Multi-AZ failover, and encryption "
                "cannot be changed in place", hint="delete it (or `provision down`) and run `provision up` again")
        elasticache = ctx.client("elasticache")
        changes = ctx.converge_tags(group.get("Tags", []), self.name, apply, lambda missing: (
            elasticache.add_tags_to_resource(ResourceName=resource.attrs["arn"], Tags=missing)))
        if group.get("CacheNodeType") and group["CacheNodeType"] != ctx.config.cache_node_type:
            changes.append(f"node type {group['CacheNodeType']} -> {ctx.config.cache_node_type} (online, minutes)")
            if apply:
                # A scaling in place: Redis stays up, the endpoint stays the same.
                elasticache.modify_replication_group(ReplicationGroupId=resource.id,
                                                     CacheNodeType=ctx.config.cache_node_type, ApplyImmediately=True)
        return changes

    # -- delete ------------------------------------------------------------------------------
    def delete(self, ctx, resource):
        if resource.raw.get("Status") != "deleting":
            # AWS refuses to delete a group still being created or modified
            # (InvalidReplicationGroupState): let the last change finish first.
            if resource.raw.get("Status") not in ("available", None):
                ctx.wait("elasticache", "replication_group_available", ReplicationGroupId=resource.id,
                         timeout=self.create_timeout, what="cache to finish its change before deleting it")
            ctx.client("elasticache").delete_replication_group(ReplicationGroupId=resource.id)
        # Its nodes hold interfaces in the data subnets and the cache group, and the subnet group
        # is in use, until it is gone.
        ctx.wait("elasticache", "replication_group_deleted", ReplicationGroupId=resource.id,
                 timeout=self.delete_timeout, what="cache to be deleted (5-10 minutes on AWS)")

    def app_environment(self, ctx, resource):
        if resource is None:
            return {}
        # No host: the primary endpoint exists once the group is available, minutes after the
        # instances boot; the backend looks it up by the group's id.
        return {"REDIS_REPLICATION_GROUP_ID": resource.id, "REDIS_PORT": str(resource.attrs.get("port") or 6379),
                "REDIS_TLS": "1", "AWS_REGION": ctx.region}

    def app_statements(self, ctx, resource):
        if resource is None:
            return []
        return [{"Sid": "FindCache", "Effect": "Allow", "Action": "elasticache:DescribeReplicationGroups",
                 "Resource": resource.attrs["arn"]}]

    def outputs(self, resource):
        return {"cache_host": resource.attrs.get("host"), "cache_port": resource.attrs.get("port")}

    def describe(self, resource):
        return (f"{resource.raw.get('Status', '')}, {resource.raw.get('CacheNodeType', '')} x{NODES}, "
                f"{resource.attrs.get('host')}:{resource.attrs.get('port')}")
