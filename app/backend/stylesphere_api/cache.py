"""Redis (ElastiCache) in front of the catalogue, and the connection to it.

The catalogue is read far more often than it changes: it is kept in Redis for
CATALOG_CACHE_TTL seconds (60 by default) under one key, so a burst of page views
costs the database one query per minute, and a catalogue read still answers from
Redis while the database is briefly unreachable. Redis being down only costs the
cache: reads go to the store.
"""

from __future__ import annotations

import json
import logging
import threading
import time

from .endpoints import redis_host
from .secrets import Secret, SecretUnavailable

log = logging.getLogger(__name__)

CATALOG_KEY = "stylesphere:catalog:v1"


class RedisClient:
    """A redis-py client whose AUTH token can come from Secrets Manager.

    ElastiCache's in-transit encryption is TLS on the same port (REDIS_TLS=1); its
    certificate is signed by Amazon's public CA, so the system trust store verifies it.
    An authentication failure re-reads the token once (a rotated AUTH token).
    """

    def __init__(self, settings):
        import redis

        self._redis = redis
        self.settings = settings
        self.secret = Secret(value=settings.redis_password, arn=settings.redis_auth_secret_arn,
                             region=settings.aws_region, field=None)
        self._lock = threading.Lock()
        self._client = None
        self.errors = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)

    def _make(self, password: str):
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        return self._redis.Redis(
            host=redis_host(self.settings), port=self.settings.redis_port,
            password=password or None, ssl=self.settings.redis_tls,
            socket_timeout=2, socket_connect_timeout=2, health_check_interval=30,
            # One immediate retry (a connection the server closed while idle), not
            # redis-py's default backoff of seconds inside a page view.
            retry=Retry(NoBackoff(), 1),
            decode_responses=True,
        )

    @property
    def client(self):
        with self._lock:
            if self._client is None:
                self._client = self._make(self.secret.get())
            return self._client

    def call(self, fn):
        """Run ``fn(client)``; on a refused AUTH token read the secret again once and retry."""
        try:
            return fn(self.client)
        except self._redis.exceptions.AuthenticationError:
            if not self.secret.refreshable:
                raise
            log.warning("Redis refused the cached AUTH token; reading the secret again")
            with self._lock:
                self._client = self._make(self.secret.refresh())
            return fn(self._client)


def redis_client(settings) -> RedisClient | None:
    return RedisClient(settings) if settings.redis_configured else None


class CatalogCache:
    """The catalogue in Redis for ``ttl`` seconds; every Redis failure is a cache miss.

    After a failure the cache is skipped for PAUSE seconds, so an unreachable Redis
    (a security group dropping packets) costs one connect timeout, not one per request.
    """

    PAUSE = 15.0

    def __init__(self, redis: RedisClient | None, ttl: int):
        self.redis = redis
        self.ttl = ttl
        self._paused_until = 0.0

    def _use(self, fn):
        if self.redis is None or time.monotonic() < self._paused_until:
            return None
        try:
            return self.redis.call(fn)
        except self.redis.errors + (self.redis._redis.exceptions.AuthenticationError, SecretUnavailable) as exc:
            log.warning("catalogue cache unavailable for %.0f s: %s", self.PAUSE, exc)
            self._paused_until = time.monotonic() + self.PAUSE
            return None

    def get(self) -> list[dict] | None:
        text = self._use(lambda r: r.get(CATALOG_KEY))
        return json.loads(text) if text else None

    def put(self, products: list[dict]) -> None:
        if self.ttl > 0:
            self._use(lambda r: r.set(CATALOG_KEY, json.dumps(products), ex=self.ttl))
