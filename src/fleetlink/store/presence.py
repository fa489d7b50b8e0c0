"""The agent's presence item: one model for every capability that touches it (heartbeats write it,
tunnels move its ``tunnels_version`` on), so each keeps its independence from the others."""

from __future__ import annotations

from typing import Any

from pynamodb.attributes import MapAttribute, NumberAttribute, UnicodeAttribute

from fleetlink.store.base import TableItem


class AgentPresenceItem(TableItem, discriminator="presence"):
    """What the last heartbeat said: small (under 1 KB) so a heartbeat costs 1 write unit."""

    last_seen_at = NumberAttribute(null=True)
    reported_status = UnicodeAttribute(null=True)
    metrics: MapAttribute[str, Any] = MapAttribute(default=dict)
    heartbeats = NumberAttribute(default=0)
    #: The last heartbeat sequence (``seq:<n>`` nonce) accepted; absent until the first one.
    sequence = NumberAttribute(null=True)
    #: Random per heartbeat request that wrote ``sequence``: botocore's resend of that very update
    #: (applied, answer lost) passes the replay check; a replayed heartbeat does not.
    sequence_claim = UnicodeAttribute(null=True)
    #: Moved on by the tunnels capability (``fleetlink.store.tunnels``, one UpdateItem of only this
    #: attribute); heartbeats never write it.
    tunnels_version = NumberAttribute(null=True)
