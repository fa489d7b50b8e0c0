"""Wire models of decommissioning and agent versions, shared by the handlers and the command line."""

from __future__ import annotations

from fleetlink.core.deferred_model import DeferredModel


class PurgeResult(DeferredModel):
    agent_id: str
    purged_items: int


class VersionReported(DeferredModel):
    agent_id: str
    agent_version: str
