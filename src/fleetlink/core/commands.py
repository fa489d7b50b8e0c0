"""Inputs of the use cases; the API serves them as request bodies, so field rules live here once."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from fleetlink.core.entities import Hardware, KeyAlg, Tags
from fleetlink.core.numbers import Metric, StrictInt

Pem = Annotated[str, StringConstraints(min_length=64, max_length=16_384, pattern=r"^\s*-----BEGIN ")]
Fingerprint = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:+/=-]{16,256}$")]
MetricName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.]{1,24}$")]
NamePrefix = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{0,31}$")]
Capability = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:/-]{1,64}$")]

MAX_HEARTBEAT_METRICS = 16


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class MintRegistrationToken(Strict):
    ttl_seconds: StrictInt = Field(
        default=3600, ge=60, le=30 * 24 * 3600, description="Lifetime of the token"
    )
    max_uses: StrictInt = Field(default=1, ge=1, le=100_000)
    tags: Tags = Field(default_factory=dict, description="Tags every agent registered with it gets")
    name_prefix: NamePrefix | None = Field(default=None, description="Agents are named <prefix>-<hostname>")


class RegisterAgent(Strict):
    fingerprint: Fingerprint
    public_key: Pem = Field(description="PEM SubjectPublicKeyInfo of the agent's signing key")
    key_alg: KeyAlg
    encryption_public_key: Pem | None = Field(
        default=None, description="PEM key (RSA or X25519) that secrets for this agent are sealed to"
    )
    hardware: Hardware
    tags: Tags = Field(default_factory=dict)
    name: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")] | None = None
    capabilities: list[Capability] = Field(default_factory=list, max_length=64)
    agent_version: Annotated[str, StringConstraints(max_length=64)] | None = None


class Heartbeat(Strict):
    status: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z_]{0,31}$")] | None = Field(
        default=None, description="What the agent says of itself, e.g. ok, busy, draining"
    )
    metrics: dict[MetricName, Metric] = Field(default_factory=dict, max_length=MAX_HEARTBEAT_METRICS)
    running_executions: list[Annotated[str, StringConstraints(max_length=64)]] = Field(
        default_factory=list, max_length=100, description="Execution ids whose leases to renew"
    )


class ReplaceTags(Strict):
    tags: Tags
