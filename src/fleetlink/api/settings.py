"""Settings from the environment (Lambda configuration, or what `fleetlink dev` sets)."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from enum import StrEnum

from fleetlink.store.table import DEFAULT_TABLE_NAME


class OperatorAuth(StrEnum):
    IAM = "iam"  # API Gateway checked SigV4; the handler reads the caller from the request context
    TOKEN = "token"  # noqa: S105 - `Authorization: Bearer <operator token>` (the local dev stack)


@dataclass(frozen=True)
class Settings:
    table_name: str = DEFAULT_TABLE_NAME
    region: str | None = None
    dynamodb_endpoint: str | None = None
    heartbeat_interval_s: int = 60
    operator_auth: OperatorAuth = OperatorAuth.IAM
    operator_token_sha256: str | None = None
    signature_max_skew_s: int = 300
    nonce_lifetime_s: int = 600
    #: Finished tasks and executions are removed (TTL) this many days after they finish.
    retention_days: int = 30
    #: Authenticates list cursors (HMAC). Deployed functions share one secret value
    #: (``FLEETLINK_CURSOR_KEY``) so a cursor opens in any container; None: a key per process.
    cursor_key: bytes | None = None

    @classmethod
    def from_env(cls) -> Settings:
        env = os.environ
        token = env.get("FLEETLINK_OPERATOR_TOKEN")
        return cls(
            table_name=env.get("TABLE_NAME", DEFAULT_TABLE_NAME),
            region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION"),
            dynamodb_endpoint=env.get("FLEETLINK_DYNAMODB_ENDPOINT") or None,
            heartbeat_interval_s=int(env.get("FLEETLINK_HEARTBEAT_INTERVAL_S", "60")),
            operator_auth=OperatorAuth(env.get("FLEETLINK_OPERATOR_AUTH", OperatorAuth.IAM.value)),
            operator_token_sha256=hashlib.sha256(token.encode()).hexdigest() if token else None,
            retention_days=int(env.get("FLEETLINK_RETENTION_DAYS", "30")),
            cursor_key=cursor_key(env.get("FLEETLINK_CURSOR_KEY")),
        )


def cursor_key(secret: str | None) -> bytes | None:
    """The cursor HMAC key derived from a configured secret of at least 32 characters."""
    if not secret:
        return None
    if len(secret) < 32:
        raise ValueError("FLEETLINK_CURSOR_KEY must be at least 32 characters of random text")
    return hashlib.sha256(b"fleetlink-cursor-key\n" + secret.encode()).digest()
