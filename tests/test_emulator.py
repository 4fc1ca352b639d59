"""The emulator answering requests in parallel, as it does for a fleet's or a cleanup's stacks and
in the threaded sandbox server: one request's answer never depends on another's."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import boto3
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from stacks import REGION


def _public_key() -> bytes:
    key = ed25519.Ed25519PrivateKey.generate().public_key()
    return key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)


def test_describe_key_pairs_answers_each_request_for_itself(moto_aws):
    """moto wrote IncludePublicKey into a dict shared by every EC2 answer: a request asking for
    the public key could be answered without it (the key pair step then replaces a good key
    pair), and other answers being serialized could fail with "dictionary changed size"."""
    ec2 = boto3.client("ec2", region_name=REGION)
    ec2.import_key_pair(KeyName="lab-ssh", PublicKeyMaterial=_public_key())
    start = threading.Barrier(8)

    def ask(worker: int) -> list[str]:
        wrong = []
        start.wait()
        for _ in range(40):
            include = worker % 2 == 0
            pairs = ec2.describe_key_pairs(IncludePublicKey=include)["KeyPairs"]
            if ("PublicKey" in pairs[0]) != include:
                wrong.append(f"IncludePublicKey={include} answered {'with' if not include else 'without'} it")
            ec2.describe_vpcs()
        return wrong

    with ThreadPoolExecutor(8) as pool:
        wrong = [w for found in pool.map(ask, range(8)) for w in found]
    assert wrong == []


# -- ElastiCache ---------------------------------------------------------------------------------

def _cache_subnet_group(name="lab-cache"):
    ec2 = boto3.client("ec2", region_name=REGION)
    vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.9.1.0/24", AvailabilityZone=f"{REGION}a")["Subnet"]["SubnetId"]
    elasticache = boto3.client("elasticache", region_name=REGION)
    elasticache.create_cache_subnet_group(CacheSubnetGroupName=name, CacheSubnetGroupDescription="lab",
                                          SubnetIds=[subnet])
    return elasticache


def test_a_cache_subnet_group_is_deleted_once_no_replication_group_uses_it(moto_aws):
    """moto has no DeleteCacheSubnetGroup; AWS refuses it while a replication group, one being
    deleted included, uses the group."""
    from botocore.exceptions import ClientError

    elasticache = _cache_subnet_group()
    elasticache.create_replication_group(ReplicationGroupId="lab-cache", ReplicationGroupDescription="lab",
                                         Engine="redis", CacheSubnetGroupName="lab-cache")
    try:
        elasticache.delete_cache_subnet_group(CacheSubnetGroupName="lab-cache")
        raise AssertionError("deleted while in use")
    except ClientError as e:
        assert e.response["Error"]["Code"] == "CacheSubnetGroupInUse"
    elasticache.delete_replication_group(ReplicationGroupId="lab-cache")
    elasticache.delete_cache_subnet_group(CacheSubnetGroupName="lab-cache")
    assert elasticache.describe_cache_subnet_groups()["CacheSubnetGroups"] == []
    try:
        elasticache.delete_cache_subnet_group(CacheSubnetGroupName="lab-cache")
        raise AssertionError("deleted twice")
    except ClientError as e:
        assert e.response["Error"]["Code"] == "CacheSubnetGroupNotFoundFault"


def test_a_deleted_replication_group_is_gone_after_the_backends_deletion_time(moto_aws):
    """moto's deleted group read `deleting` forever, so no `down` could ever finish."""
    import time

    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.elasticache.models import elasticache_backends

    elasticache = _cache_subnet_group()
    backend = elasticache_backends[DEFAULT_ACCOUNT_ID][REGION]
    backend.deletion_seconds = 0.2
    for name in ("lab-cache", "slow-cache"):
        elasticache.create_replication_group(ReplicationGroupId=name, ReplicationGroupDescription="lab",
                                             Engine="redis", NumCacheClusters=2)
        deleted = elasticache.delete_replication_group(ReplicationGroupId=name)["ReplicationGroup"]
        assert deleted["Status"] == "deleting"
        if name == "lab-cache":
            time.sleep(0.25)
    # The first one's time is up: gone; the second still reads `deleting`.
    assert [(g["ReplicationGroupId"], g["Status"]) for g in
            elasticache.describe_replication_groups()["ReplicationGroups"]] == [("slow-cache", "deleting")]
    # Without a time of its own (the sandbox), a deletion is over at the next read.
    backend.deletion_seconds = 0.0
    assert elasticache.describe_replication_groups()["ReplicationGroups"] == []


def test_a_replication_group_has_the_nodes_it_was_asked_for(moto_aws):
    elasticache = _cache_subnet_group()
    group = elasticache.create_replication_group(
        ReplicationGroupId="lab-cache", ReplicationGroupDescription="lab", Engine="redis", NumCacheClusters=2,
        PreferredCacheClusterAZs=[f"{REGION}a", f"{REGION}b"])["ReplicationGroup"]
    assert group["MemberClusters"] == ["lab-cache-001", "lab-cache-002"]
    members = group["NodeGroups"][0]["NodeGroupMembers"]
    assert [(m["CurrentRole"], m["PreferredAvailabilityZone"]) for m in members] == [
        ("primary", f"{REGION}a"), ("replica", f"{REGION}b")]


def test_a_replication_groups_node_type_is_changed_in_place(moto_aws):
    elasticache = _cache_subnet_group()
    elasticache.create_replication_group(ReplicationGroupId="lab-cache", ReplicationGroupDescription="lab",
                                         Engine="redis", CacheNodeType="cache.t4g.micro", NumCacheClusters=2)
    changed = elasticache.modify_replication_group(ReplicationGroupId="lab-cache", CacheNodeType="cache.t4g.small",
                                                   ApplyImmediately=True)["ReplicationGroup"]
    assert changed["CacheNodeType"] == "cache.t4g.small"
    (group,) = elasticache.describe_replication_groups(ReplicationGroupId="lab-cache")["ReplicationGroups"]
    assert group["CacheNodeType"] == "cache.t4g.small" and group["MemberClusters"] == ["lab-cache-001", "lab-cache-002"]


def test_a_distribution_keeps_its_origin_access_control_and_is_listed_with_its_config(moto_aws):
    """AWS hands back an S3 origin's Origin Access Control, and lists each distribution with its
    comment, origins and whether it is enabled; unpatched moto drops the first and lists only ids
    and names, so `up` would "correct" the origin every run and `down` could not tell a stack's
    distribution from another."""
    cloudfront = boto3.client("cloudfront", region_name=REGION)
    control = cloudfront.create_origin_access_control(OriginAccessControlConfig={
        "Name": "lab-assets", "SigningProtocol": "sigv4", "SigningBehavior": "always",
        "OriginAccessControlOriginType": "s3"})["OriginAccessControl"]["Id"]
    methods = {"Quantity": 2, "Items": ["GET", "HEAD"], "CachedMethods": {"Quantity": 2, "Items": ["GET", "HEAD"]}}
    config = {"CallerReference": "lab", "Comment": "provision stack lab", "Enabled": True,
              "Origins": {"Quantity": 1, "Items": [{
                  "Id": "assets", "DomainName": "lab-assets.s3.us-east-1.amazonaws.com",
                  "S3OriginConfig": {"OriginAccessIdentity": ""}, "OriginAccessControlId": control}]},
              "DefaultCacheBehavior": {"TargetOriginId": "assets", "ViewerProtocolPolicy": "redirect-to-https",
                                       "CachePolicyId": "658327ea-f89d-4fab-a63d-7e88639e58f6",
                                       "AllowedMethods": methods}}
    made = cloudfront.create_distribution(DistributionConfig=config)["Distribution"]
    [origin] = cloudfront.get_distribution(Id=made["Id"])["Distribution"]["DistributionConfig"]["Origins"]["Items"]
    assert origin["OriginAccessControlId"] == control
    assert origin["S3OriginConfig"] == {"OriginAccessIdentity": ""}
    [listed] = cloudfront.list_distributions()["DistributionList"]["Items"]
    assert (listed["Comment"], listed["Enabled"]) == ("provision stack lab", True)
    assert [o["DomainName"] for o in listed["Origins"]["Items"]] == ["lab-assets.s3.us-east-1.amazonaws.com"]
