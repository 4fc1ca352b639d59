"""The backend's configuration, read once from the environment.

The infrastructure writes these variables into the compose `.env` file next to
docker-compose.yml; the names are a contract with it (see app/README.md).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

SQL_ENGINES = ("postgres", "mysql", "mariadb")
DEFAULT_PORTS = {"postgres": 5432, "mysql": 3306, "mariadb": 3306}


class ConfigError(ValueError):
    """A setting the backend cannot work with; raised at start so the container fails loudly."""


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on", "require")


@dataclass(frozen=True)
class Settings:
    database_engine: str = ""
    database_host: str = ""
    database_instance_id: str = ""   # looked up when there is no host (endpoints.py)
    database_port: int = 0
    database_name: str = "stylesphere"
    database_user: str = ""
    database_password: str = ""
    database_secret_arn: str = ""
    database_tls: bool = False

    catalog: str = ""
    dynamodb_table_prefix: str = "stylesphere-"
    dynamodb_create_tables: bool = False

    redis_host: str = ""
    redis_replication_group_id: str = ""   # looked up when there is no host
    redis_port: int = 6379
    redis_tls: bool = False
    redis_password: str = ""
    redis_auth_secret_arn: str = ""
    catalog_cache_ttl: int = 60

    shared_files_dir: str = ""
    aws_region: str = ""

    @classmethod
    def from_env(cls, env=None) -> "Settings":
        env = os.environ if env is None else env

        def get(name, default=""):
            return (env.get(name) or default).strip()

        engine = get("DATABASE_ENGINE").lower()
        if engine and engine not in SQL_ENGINES:
            raise ConfigError(f"DATABASE_ENGINE={engine!r} is not one of {', '.join(SQL_ENGINES)}")
        catalog = get("CATALOG").lower()
        if catalog and catalog != "dynamodb":
            raise ConfigError(f"CATALOG={catalog!r}: the only value is 'dynamodb' (unset: not DynamoDB)")
        tls = get("DATABASE_TLS").lower()
        if tls not in ("", "require"):
            raise ConfigError(f"DATABASE_TLS={tls!r}: use 'require' or leave it empty")
        try:
            port = int(get("DATABASE_PORT") or DEFAULT_PORTS.get(engine, 0))
            redis_port = int(get("REDIS_PORT") or 6379)
            ttl = int(get("CATALOG_CACHE_TTL") or 60)
        except ValueError as exc:
            raise ConfigError(f"a port or TTL is not a number: {exc}") from None
        return cls(
            database_engine=engine,
            database_host=get("DATABASE_HOST"),
            database_instance_id=get("DATABASE_INSTANCE_ID"),
            database_port=port,
            database_name=get("DATABASE_NAME") or "stylesphere",
            database_user=get("DATABASE_USER"),
            database_password=env.get("DATABASE_PASSWORD") or "",
            database_secret_arn=get("DATABASE_SECRET_ARN"),
            database_tls=tls == "require",
            catalog=catalog,
            dynamodb_table_prefix=get("DYNAMODB_TABLE_PREFIX") or "stylesphere-",
            dynamodb_create_tables=_flag(get("DYNAMODB_CREATE_TABLES")),
            redis_host=get("REDIS_HOST"),
            redis_replication_group_id=get("REDIS_REPLICATION_GROUP_ID"),
            redis_port=redis_port,
            redis_tls=_flag(get("REDIS_TLS")),
            redis_password=env.get("REDIS_PASSWORD") or "",
            redis_auth_secret_arn=get("REDIS_AUTH_SECRET_ARN"),
            catalog_cache_ttl=ttl,
            shared_files_dir=get("SHARED_FILES_DIR"),
            aws_region=get("AWS_REGION") or get("AWS_DEFAULT_REGION"),
        )

    @property
    def redis_configured(self) -> bool:
        return bool(self.redis_host or self.redis_replication_group_id)

    @property
    def store_kind(self) -> str:
        """Which store holds the catalogue, carts and orders.

        DynamoDB when CATALOG=dynamodb (it names the catalogue's store outright),
        else the SQL engine, else Redis alone, else process memory.
        """
        if self.catalog == "dynamodb":
            return "dynamodb"
        if self.database_engine:
            return self.database_engine
        if self.redis_configured:
            return "redis"
        return "memory"
