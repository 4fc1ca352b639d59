"""Where the database and the cache are, when the infrastructure can only name them.

An RDS instance or an ElastiCache replication group has an address only once it is
available, minutes after the app's instances boot; so the infrastructure passes their
identifiers (DATABASE_INSTANCE_ID, REDIS_REPLICATION_GROUP_ID) and the backend asks AWS
for the address with the instance role (rds:DescribeDBInstances,
elasticache:DescribeReplicationGroups on that one resource). Until there is one, the store
is unavailable (a 503 and a retry, like a database that does not answer yet). An address
given outright (DATABASE_HOST, REDIS_HOST) wins, and is never looked up.
"""

from __future__ import annotations

import threading

from .stores import StoreUnavailable

_lock = threading.Lock()
_found: dict[tuple[str, str], str] = {}


def _client(service: str, region: str):
    import boto3

    return boto3.session.Session().client(service, region_name=region or None)


def _lookup(key: tuple[str, str], read) -> str:
    with _lock:
        if key in _found:
            return _found[key]
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        address = read()
    except (BotoCoreError, ClientError) as exc:
        raise StoreUnavailable(f"cannot look up {key[0]} {key[1]}: {exc}") from exc
    with _lock:
        _found[key] = address
    return address


def forget() -> None:
    """Look every address up again (after a failover the same name stays; tests)."""
    with _lock:
        _found.clear()


def database_host(settings) -> str:
    if settings.database_host or not settings.database_instance_id:
        return settings.database_host

    def read():
        rds = _client("rds", settings.aws_region)
        (item,) = rds.describe_db_instances(DBInstanceIdentifier=settings.database_instance_id)["DBInstances"]
        address = (item.get("Endpoint") or {}).get("Address")
        if not address:
            raise StoreUnavailable(f"database {settings.database_instance_id} is {item.get('DBInstanceStatus')}, "
                                   "with no address yet")
        return address
    return _lookup(("database", settings.database_instance_id), read)


def redis_host(settings) -> str:
    if settings.redis_host or not settings.redis_replication_group_id:
        return settings.redis_host

    def read():
        elasticache = _client("elasticache", settings.aws_region)
        (group,) = elasticache.describe_replication_groups(
            ReplicationGroupId=settings.redis_replication_group_id)["ReplicationGroups"]
        endpoint = next((g.get("PrimaryEndpoint") for g in group.get("NodeGroups", []) if g.get("PrimaryEndpoint")),
                        None)
        if not endpoint or not endpoint.get("Address"):
            raise StoreUnavailable(f"cache {settings.redis_replication_group_id} is {group.get('Status')}, "
                                   "with no address yet")
        return endpoint["Address"]
    return _lookup(("cache", settings.redis_replication_group_id), read)
