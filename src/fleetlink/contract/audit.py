"""Wire models of the audit log and of who the calling operator is."""

from __future__ import annotations

from pydantic import Field

from fleetlink.core.audit import AuditRecord
from fleetlink.core.deferred_model import DeferredModel
from fleetlink.core.roles import Role


class AuditList(DeferredModel):
    items: list[AuditRecord] = Field(description="Newest first")
    cursor: str | None = Field(
        description="Opaque; pass it back for the next page (a page may be short when the filter is "
        "selective: follow the cursor until it is null)"
    )


class WhoAmI(DeferredModel):
    actor: str = Field(description="The IAM principal ARN in AWS; the token's name on the dev stack")
    role: Role | None = Field(
        description="The token's role on the dev stack. In AWS, where IAM (the managed role policies "
        "attached to the principal) decides at the gateway: null from /v1/whoami, and the probed role "
        "from /v1/whoami/operator and /v1/whoami/admin (which IAM lets through only for that role)"
    )
    routes: dict[str, str] = Field(
        description="'METHOD /path' of every operator route with the least role it needs"
    )
