"""Value types every capability shares (pydantic): tags, hardware, key algorithms, pages, audit.

Times are epoch milliseconds. Each capability keeps its own records in ``core/<capability>/model.py``.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any, Generic, TypeVar

from pydantic import ConfigDict, Field, StringConstraints, field_validator

from fleetlink.core.audit import AuditRecord as AuditRecord  # re-exported: stores and use cases use it
from fleetlink.core.deferred_model import DeferredModel
from fleetlink.core.json_values import check_json_value

TagKey = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:/-]{1,64}$")]
TagValue = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:/@+ -]{0,128}$")]
#: Tags per agent. Replacing every tag is one transaction: profile + audit + removals + additions
#: = 2 + 2 x 40 = 82 actions, registering one is 6 + 40; DynamoDB allows 100 per transaction.
MAX_TAGS = 40
Tags = Annotated[dict[TagKey, TagValue], Field(max_length=MAX_TAGS)]
ShortText = Annotated[str, StringConstraints(min_length=1, max_length=256)]

MAX_HARDWARE_EXTRA_FIELDS = 16
#: An extra hardware field's name: 1 to 64 printable characters, not only blanks (a map key
#: DynamoDB stores and serves back, and a name a table can show).
_HARDWARE_FIELD_NAME = re.compile(r"(?=.*\S)[^\x00-\x1f\x7f]{1,64}")


class Strict(DeferredModel):
    """A command body: unknown fields are refused, strings stripped."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class KeyAlg(StrEnum):
    ED25519 = "ed25519"
    RSA_PSS_SHA512 = "rsa-pss-sha512"


class AgentState(StrEnum):
    ACTIVE = "active"
    REVOKED = "revoked"


class Liveness(StrEnum):
    ONLINE = "online"
    CONNECTION_LOST = "connection_lost"
    NEVER_SEEN = "never_seen"


class Hardware(DeferredModel):
    """What an agent reports about its machine; unknown extra fields are kept (at most 16, short)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    machine_id: ShortText
    hostname: ShortText
    ip_address: Annotated[str, StringConstraints(max_length=64)] = ""
    mac_address: Annotated[str, StringConstraints(max_length=64)] = ""
    os: Annotated[str, StringConstraints(max_length=128)] = ""
    arch: Annotated[str, StringConstraints(max_length=32)] = ""

    @field_validator("*", mode="after")
    @classmethod
    def _strip(cls, value: Any) -> Any:
        return value.strip() if isinstance(value, str) else value

    def model_post_init(self, __context: Any) -> None:
        extra = self.model_extra or {}
        if len(extra) > MAX_HARDWARE_EXTRA_FIELDS:
            raise ValueError(f"at most {MAX_HARDWARE_EXTRA_FIELDS} extra hardware fields")
        for name, value in extra.items():
            if not _HARDWARE_FIELD_NAME.fullmatch(name):
                raise ValueError(f"hardware field {name!r} needs a name of 1 to 64 printable characters")
            if not isinstance(value, str | int | float | bool) or len(str(value)) > 256:
                raise ValueError(f"hardware field {name!r} must be a scalar of at most 256 characters")
            check_json_value(value)

    def fields(self) -> dict[str, str]:
        """Every reported field as a normalised string, for comparison."""
        return {k: str(v).strip().lower() for k, v in self.model_dump().items() if str(v).strip()}


T = TypeVar("T")


class Page(DeferredModel, Generic[T]):
    items: list[T]
    cursor: str | None = None
