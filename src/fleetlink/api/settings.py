"""Settings from the environment (Lambda configuration, or what `fleetlink dev` sets)."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from enum import StrEnum

from fleetlink.core.roles import Role, parse_role
from fleetlink.store.table import DEFAULT_TABLE_NAME

#: The name (actor) of the dev stack's one generated operator token, which holds every role.
DEFAULT_OPERATOR_NAME = "admin"


class OperatorAuth(StrEnum):
    IAM = "iam"  # API Gateway checked SigV4; the handler reads the caller from the request context
    TOKEN = "token"  # noqa: S105 - `Authorization: Bearer <operator token>` (the local dev stack)


@dataclass(frozen=True)
class OperatorToken:
    """A named operator token of the dev stack: only its SHA-256 is configured."""

    name: str
    role: Role
    sha256: str


def operator_tokens_from_json(text: str | None) -> tuple[OperatorToken, ...]:
    """``FLEETLINK_OPERATOR_TOKENS``: ``[{"name", "role", "sha256"}, ...]`` (hashes, never tokens)."""
    if not text:
        return ()
    return tuple(
        OperatorToken(
            name=str(entry["name"]), role=parse_role(str(entry["role"])), sha256=str(entry["sha256"])
        )
        for entry in json.loads(text)
    )


@dataclass(frozen=True)
class Settings:
    table_name: str = DEFAULT_TABLE_NAME
    region: str | None = None
    dynamodb_endpoint: str | None = None
    heartbeat_interval_s: int = 60
    operator_auth: OperatorAuth = OperatorAuth.IAM
    operator_token_sha256: str | None = None
    #: Named operator tokens with roles (dev stack); ``operator_token_sha256`` is the admin's.
    operator_tokens: tuple[OperatorToken, ...] = ()
    #: Audit entries are removed (TTL) this many days after they were written.
    audit_retention_days: int = 365
    signature_max_skew_s: int = 300
    nonce_lifetime_s: int = 600
    #: Finished tasks and executions are removed (TTL) this many days after they finish.
    retention_days: int = 30
    #: Authenticates list cursors (HMAC). Functions share one secret value so a cursor opens in any
    #: container: ``FLEETLINK_CURSOR_KEY`` itself (dev stack), or deployed, the Secrets Manager secret
    #: named by ``FLEETLINK_CURSOR_KEY_SECRET_ARN`` (read on first use). Neither: a key per process.
    cursor_key: bytes | None = None
    cursor_key_secret_arn: str | None = None
    #: Tunnel events are removed (TTL) this many days after they happened.
    tunnel_event_retention_days: int = 30
    #: The releases bucket (agent artifacts), the output bucket (complete task output), and an S3
    #: endpoint other than AWS's (the dev stack's).
    releases_bucket: str | None = None
    output_bucket: str | None = None
    s3_endpoint: str | None = None
    #: A deleted agent can be restored this long; then the cleanup duty purges its items.
    deleted_agent_retention_days: int = 7

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
            operator_tokens=operator_tokens_from_json(env.get("FLEETLINK_OPERATOR_TOKENS")),
            audit_retention_days=int(env.get("FLEETLINK_AUDIT_RETENTION_DAYS", "365")),
            retention_days=int(env.get("FLEETLINK_RETENTION_DAYS", "30")),
            cursor_key=cursor_key(env.get("FLEETLINK_CURSOR_KEY")),
            cursor_key_secret_arn=env.get("FLEETLINK_CURSOR_KEY_SECRET_ARN") or None,
            tunnel_event_retention_days=int(env.get("FLEETLINK_TUNNEL_EVENT_RETENTION_DAYS", "30")),
            releases_bucket=env.get("FLEETLINK_RELEASES_BUCKET") or None,
            output_bucket=env.get("FLEETLINK_OUTPUT_BUCKET") or None,
            s3_endpoint=env.get("FLEETLINK_S3_ENDPOINT") or None,
            deleted_agent_retention_days=int(env.get("FLEETLINK_DELETED_AGENT_RETENTION_DAYS", "7")),
        )


def cursor_key(secret: str | None) -> bytes | None:
    """The cursor HMAC key derived from a configured secret of at least 32 characters."""
    if not secret:
        return None
    if len(secret) < 32:
        raise ValueError("FLEETLINK_CURSOR_KEY must be at least 32 characters of random text")
    return hashlib.sha256(b"fleetlink-cursor-key\n" + secret.encode()).digest()


def cursor_key_from_secret(secret_arn: str, region: str | None) -> bytes:
    """The cursor HMAC key from the Secrets Manager secret the CDK app creates (one GetSecretValue)."""
    import boto3

    client = boto3.client("secretsmanager", region_name=region)
    key = cursor_key(client.get_secret_value(SecretId=secret_arn).get("SecretString"))
    if key is None:
        raise ValueError(f"the cursor key secret {secret_arn} holds no string")
    return key
