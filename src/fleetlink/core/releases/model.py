"""Releases and the release key, as stored and answered (the key's private half never leaves the operator)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import Field, StringConstraints

from fleetlink.core.agents.commands import Pem
from fleetlink.core.deferred_model import DeferredModel
from fleetlink.core.entities import Strict
from fleetlink.core.numbers import StrictInt
from fleetlink.release.manifest import MAX_ARTIFACT_BYTES, PLATFORMS, SHA256_PATTERN, VERSION_PATTERN

Version = Annotated[str, StringConstraints(pattern=VERSION_PATTERN, max_length=48)]
PlatformName = Annotated[str, StringConstraints(pattern="^(" + "|".join(PLATFORMS) + ")$")]
Signature = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9+/]{86}==$")]


class ReleaseStatus(StrEnum):
    UPLOADING = "uploading"  # announced, its artifact not (yet) in the bucket
    PUBLISHED = "published"  # in the bucket with the signed size: nodes may download it


class Release(DeferredModel):
    version: str
    platform: str
    sha256: str
    size: int
    signature: str = Field(description="Ed25519 signature (base64) of the manifest by the release key")
    key_id: str = Field(description="The release key that signed it")
    status: ReleaseStatus
    created_at: int
    published_at: int | None = None
    created_by: str


class ReleaseKey(DeferredModel):
    public_key: str = Field(description="PEM Ed25519 public key nodes pin")
    key_id: str
    previous_key_id: str | None = None
    rotation_signature: str | None = Field(
        default=None,
        description="The previous key's signature (base64) over this key: what lets pinned nodes move",
    )
    updated_at: int


class SetReleaseKey(Strict):
    public_key: Pem
    rotation_signature: Signature | None = Field(
        default=None, description="Needed to replace a key: the current key's signature over the new one"
    )


class AnnounceRelease(Strict):
    version: Version
    platform: PlatformName
    sha256: Annotated[str, StringConstraints(pattern=SHA256_PATTERN)]
    size: StrictInt = Field(ge=1, le=MAX_ARTIFACT_BYTES)
    signature: Signature


class ReleaseUpload(DeferredModel):
    release: Release
    upload_url: str = Field(description="Presigned PUT of the artifact (one object, short-lived)")
    upload_headers: dict[str, str]
    expires_at: int


class ReleaseDownload(DeferredModel):
    version: str
    platform: str
    sha256: str
    size: int
    signature: str
    key_id: str
    download_url: str = Field(description="Presigned GET of the artifact (one object, short-lived)")
    expires_at: int


class ReleaseList(DeferredModel):
    items: list[Release]
