"""Passwords from AWS Secrets Manager, cached, re-read when the server refuses them.

RDS rotates a managed master password (every 7 days by default) by writing a new
secret version; connections opened with the old one keep working, new ones fail
authentication. So the value is read once, kept, and read again only after an
authentication failure, not on every connection.
"""

from __future__ import annotations

import json
import threading

from .stores import StoreUnavailable


class SecretUnavailable(StoreUnavailable):
    """The secret could not be read (no credentials yet, no permission, no endpoint): the
    store it unlocks is unavailable, a 503 and a retry, not a 500."""


class Secret:
    """A password that is either given (tests, local runs) or read from a secret.

    ``field`` picks a key of a JSON SecretString (RDS: "password"); None takes the
    SecretString as it is (an ElastiCache AUTH token).
    """

    def __init__(self, value: str = "", arn: str = "", region: str = "", field: str | None = None):
        self._value = value
        self.arn = arn
        self.region = region
        self.field = field
        self.reads = 0
        self._lock = threading.Lock()
        self._cached: str | None = None
        self.username: str | None = None  # what an RDS-managed secret carries beside the password

    @property
    def refreshable(self) -> bool:
        return bool(self.arn)

    def get(self) -> str:
        if not self.arn:
            return self._value
        with self._lock:
            if self._cached is None:
                self._cached = self._read()
            return self._cached

    def refresh(self) -> str:
        """Forget the cached value and read the secret again (after an authentication failure)."""
        if not self.arn:
            return self._value
        with self._lock:
            self._cached = self._read()
            return self._cached

    def _read(self) -> str:
        import boto3

        # A client per read: reads are rare (start, rotation), and the region and
        # endpoint come from the environment (AWS_REGION, AWS_ENDPOINT_URL in tests).
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            client = boto3.session.Session().client("secretsmanager", region_name=self.region or None)
            text = client.get_secret_value(SecretId=self.arn)["SecretString"]
        except (BotoCoreError, ClientError) as exc:
            raise SecretUnavailable(f"cannot read the secret {self.arn}: {exc}") from exc
        self.reads += 1
        if self.field is None:
            return text
        doc = json.loads(text)
        self.username = doc.get("username")
        return doc[self.field]
