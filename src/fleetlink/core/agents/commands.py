"""Inputs of the agent use cases; the API serves them as request bodies, so field rules live here once."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, StringConstraints

from fleetlink.core.entities import Hardware, KeyAlg, Strict, Tags
from fleetlink.core.numbers import StrictInt

Pem = Annotated[str, StringConstraints(min_length=64, max_length=16_384, pattern=r"^\s*-----BEGIN ")]
Fingerprint = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:+/=-]{16,256}$")]
NamePrefix = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{0,31}$")]
Capability = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:/-]{1,64}$")]


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
    name_suffix: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")] | None = (
        Field(
            default=None,
            description="Without a name: appended to the default name (<prefix>-<hostname>-<suffix>), "
            "so that agents of one host (one state dir each) are told apart",
        )
    )
    capabilities: list[Capability] = Field(default_factory=list, max_length=64)
    agent_version: Annotated[str, StringConstraints(max_length=64)] | None = None


class ReplaceTags(Strict):
    tags: Tags


class MintRecoveryToken(Strict):
    ttl_seconds: StrictInt = Field(default=900, ge=60, le=24 * 3600, description="Lifetime of the token")


class RotateKey(Strict):
    """A new signing key, with proof that the caller holds it (see docs/security.md)."""

    public_key: Pem = Field(description="PEM SubjectPublicKeyInfo of the new signing key")
    key_alg: KeyAlg
    created: StrictInt = Field(ge=0, le=2**53, description="Epoch seconds the proof was made (within 300 s)")
    proof: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{16,1024}$")] = Field(
        description="base64url (no padding) signature by the NEW key over the key-proof string"
    )
