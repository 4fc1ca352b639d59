"""The database's and the cache's addresses, looked up by the backend when the infrastructure can
only name them (they have one minutes after the instances boot): unavailable (a 503 and a
retry) until AWS has one, then found once and kept."""

from __future__ import annotations

import pytest

from stylesphere_api import endpoints
from stylesphere_api.settings import Settings
from stylesphere_api.stores import StoreUnavailable


class FakeAws:
    def __init__(self):
        self.db = {"DBInstanceStatus": "creating"}
        self.group = {"Status": "creating", "NodeGroups": [{"NodeGroupId": "0001"}]}
        self.calls = []

    def describe_db_instances(self, DBInstanceIdentifier):
        self.calls.append(("rds", DBInstanceIdentifier))
        return {"DBInstances": [dict(self.db)]}

    def describe_replication_groups(self, ReplicationGroupId):
        self.calls.append(("elasticache", ReplicationGroupId))
        return {"ReplicationGroups": [dict(self.group)]}


@pytest.fixture
def aws(monkeypatch):
    fake = FakeAws()
    endpoints.forget()
    monkeypatch.setattr(endpoints, "_client", lambda service, region: fake)
    yield fake
    endpoints.forget()


def test_a_database_still_creating_is_unavailable_then_found_once(aws):
    settings = Settings(database_engine="postgres", database_instance_id="shop-database", aws_region="us-east-1")
    with pytest.raises(StoreUnavailable, match="shop-database is creating"):
        endpoints.database_host(settings)
    aws.db = {"DBInstanceStatus": "available", "Endpoint": {"Address": "shop-database.abc.rds.example", "Port": 5432}}
    assert endpoints.database_host(settings) == "shop-database.abc.rds.example"
    assert endpoints.database_host(settings) == "shop-database.abc.rds.example"
    assert aws.calls == [("rds", "shop-database")] * 2


def test_a_given_host_is_never_looked_up(aws):
    settings = Settings(database_host="127.0.0.1", database_instance_id="shop-database", redis_host="127.0.0.2",
                        redis_replication_group_id="shop-cache")
    assert endpoints.database_host(settings) == "127.0.0.1" and endpoints.redis_host(settings) == "127.0.0.2"
    assert aws.calls == []


def test_the_cache_primary_endpoint_is_looked_up(aws):
    settings = Settings(redis_replication_group_id="shop-cache", aws_region="us-east-1")
    assert settings.redis_configured and settings.store_kind == "redis"
    with pytest.raises(StoreUnavailable, match="shop-cache is creating"):
        endpoints.redis_host(settings)
    aws.group = {"Status": "available", "NodeGroups": [
        {"NodeGroupId": "0001", "PrimaryEndpoint": {"Address": "master.shop-cache.x.cache.example", "Port": 6379}}]}
    assert endpoints.redis_host(settings) == "master.shop-cache.x.cache.example"


def test_the_settings_read_the_identifiers():
    settings = Settings.from_env({"DATABASE_ENGINE": "mysql", "DATABASE_INSTANCE_ID": "shop-database",
                                  "REDIS_REPLICATION_GROUP_ID": "shop-cache"})
    assert settings.database_instance_id == "shop-database" and settings.redis_replication_group_id == "shop-cache"
