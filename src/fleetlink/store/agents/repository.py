"""The adapter of the agent repository port: profiles, presence, tags, revocation, audit."""

from __future__ import annotations

import secrets
from collections.abc import Iterable

from pynamodb.exceptions import TransactWriteError, UpdateError
from pynamodb.expressions.condition import Condition
from pynamodb.expressions.update import Action

from fleetlink.contract.problems import SEQUENCE_STALE
from fleetlink.core.agents.model import Agent, Presence, RegistrationEvent
from fleetlink.core.agents.ports import AgentView
from fleetlink.core.entities import AgentState, AuditRecord, Page
from fleetlink.core.errors import Conflict, Unauthenticated
from fleetlink.core.heartbeat import Heartbeat
from fleetlink.store import keys
from fleetlink.store.agents.items import (
    AgentPresenceItem,
    AgentProfileItem,
    RegistrationEventItem,
    TagMemberItem,
    _presence,
    _profile_item,
    _tag_members,
)
from fleetlink.store.audit import audit_item
from fleetlink.store.base import TableItem, entity, transaction
from fleetlink.store.conditions import condition_failed, failed_conditions
from fleetlink.store.cursors import FILTERED_PAGE, CursorPaged, sharded_pages
from fleetlink.store.errors import translates_store_errors


@translates_store_errors
class DynamoAgentRepository(CursorPaged):
    def get_view(self, agent_id: str, *, consistent: bool = False) -> AgentView | None:
        """Profile and presence in one query (0.5 RCU eventually consistent while both fit 4 KB, 1 RCU
        consistent: authentication and identity changes must see the current key)."""
        items = TableItem.query(
            keys.agent_pk(agent_id),
            TableItem.sk.startswith(keys.AGENT_STATE_PREFIX),
            consistent_read=consistent,
        )
        profile, presence = None, None
        for item in items:
            if isinstance(item, AgentProfileItem):
                profile = item
            elif isinstance(item, AgentPresenceItem):
                presence = item
        if profile is None:
            return None
        return AgentView(
            entity(Agent, profile),
            _presence(presence) if presence else None,
            tunnels_version=int(presence.tunnels_version or 0) if presence else 0,
        )

    def list_views(
        self, *, state: AgentState | None, tag: tuple[str, str] | None, limit: int, cursor: str | None
    ) -> Page[AgentView]:
        scope = f"agents|state={state or ''}|tag={'='.join(tag) if tag else ''}"
        if tag is None:
            condition = AgentProfileItem.state == state.value if state else None
            profiles, next_cursor = sharded_pages(
                lambda shard, last_key, n: AgentProfileItem.agent_list.query(
                    keys.agent_list_pk(shard),
                    filter_condition=condition,
                    limit=n,
                    # DynamoDB applies Limit before the filter: read real pages when filtering
                    page_size=FILTERED_PAGE if condition is not None else None,
                    last_evaluated_key=last_key,
                ),
                limit,
                self._cursors,
                scope,
                cursor,
            )
            agents = [entity(Agent, p) for p in profiles]
        else:
            members, next_cursor = sharded_pages(
                lambda shard, last_key, n: TagMemberItem.query(
                    keys.tag_member_pk(tag[0], tag[1], shard), limit=n, last_evaluated_key=last_key
                ),
                limit,
                self._cursors,
                scope,
                cursor,
            )
            agents = [
                a for a in self.agents([m.agent_id for m in members]) if state is None or a.state is state
            ]
        presences = self.presences([a.agent_id for a in agents])
        views = [AgentView(a, presences.get(a.agent_id)) for a in agents]
        return Page[AgentView](items=views, cursor=next_cursor)

    @staticmethod
    def agents(agent_ids: list[str]) -> list[Agent]:
        found = {
            item.agent_id: entity(Agent, item)
            for item in AgentProfileItem.batch_get(
                [(keys.agent_pk(i), keys.AGENT_PROFILE_SK) for i in agent_ids]
            )
        }
        return [found[i] for i in agent_ids if i in found]

    @staticmethod
    def presences(agent_ids: list[str]) -> dict[str, Presence]:
        found: dict[str, Presence] = {}
        for item in AgentPresenceItem.batch_get(
            [(keys.agent_pk(i), keys.AGENT_PRESENCE_SK) for i in agent_ids]
        ):
            presence = _presence(item)
            if presence is not None:
                found[keys.agent_id_of_pk(item.pk)] = presence
        return found

    def registration_history(self, agent_id: str, limit: int) -> list[RegistrationEvent]:
        items = RegistrationEventItem.query(
            keys.agent_pk(agent_id),
            RegistrationEventItem.sk.startswith(keys.REGISTRATION_PREFIX),
            scan_index_forward=False,
            limit=limit,
        )
        return [entity(RegistrationEvent, item) for item in items]

    def record_heartbeat(
        self, agent_id: str, heartbeat: Heartbeat, *, now_ms: int, sequence: int | None = None
    ) -> None:
        """One UpdateItem on the small presence item: 1 WCU, no index write. With a ``sequence``, its
        condition is also the replay check: only a greater sequence than the last one is written."""
        item = AgentPresenceItem(keys.agent_pk(agent_id), keys.AGENT_PRESENCE_SK)
        actions: list[Action] = [
            AgentPresenceItem.last_seen_at.set(now_ms),
            AgentPresenceItem.metrics.set(heartbeat.metrics),
            AgentPresenceItem.heartbeats.add(1),
            AgentPresenceItem.reported_status.set(heartbeat.status)
            if heartbeat.status
            else AgentPresenceItem.reported_status.remove(),
        ]
        condition: Condition = AgentPresenceItem.pk.exists()
        if sequence is None:
            item.update(actions=actions, condition=condition)
            return
        claim = secrets.token_urlsafe(12)
        actions += [AgentPresenceItem.sequence.set(sequence), AgentPresenceItem.sequence_claim.set(claim)]
        condition &= (
            AgentPresenceItem.sequence.does_not_exist()
            | (AgentPresenceItem.sequence < sequence)
            | (AgentPresenceItem.sequence_claim == claim)
        )
        try:
            item.update(actions=actions, condition=condition)
        except UpdateError as error:
            if condition_failed(error):
                raise Unauthenticated(
                    "this heartbeat's sequence is not greater than the last one accepted "
                    "(a replayed or reordered heartbeat)",
                    code=SEQUENCE_STALE,
                ) from error
            raise

    def revoke(self, agent: Agent, *, now_ms: int, audit: AuditRecord) -> Agent:
        revoked = agent.model_copy(
            update={"state": AgentState.REVOKED, "revoked_at": now_ms, "updated_at": now_ms}
        )
        self._save_with_audit(revoked, audit)
        return revoked.model_copy(update={"version": (agent.version or 0) + 1})

    def replace_tags(self, agent: Agent, tags: dict[str, str], *, now_ms: int, audit: AuditRecord) -> Agent:
        before, after = set(agent.tags.items()), set(tags.items())
        updated = agent.model_copy(update={"tags": tags, "updated_at": now_ms})
        self._save_with_audit(updated, audit, add=after - before, remove=before - after)
        return updated.model_copy(update={"version": (agent.version or 0) + 1})

    @staticmethod
    def _save_with_audit(
        agent: Agent,
        audit: AuditRecord,
        add: Iterable[tuple[str, str]] = (),
        remove: Iterable[tuple[str, str]] = (),
    ) -> None:
        """Profile (optimistically locked), tag index changes and the audit record, all or nothing."""
        try:
            with transaction() as tx:
                tx.save(_profile_item(agent))
                tx.save(audit_item(audit))
                for member in _tag_members(agent.agent_id, add):
                    tx.save(member)
                for member in _tag_members(agent.agent_id, remove):
                    tx.delete(member)
        except TransactWriteError as error:
            if failed_conditions(error):
                raise Conflict("the agent changed meanwhile; retry", code="concurrent-update") from error
            raise
