"""The adapter of the registration port: tokens and registrations, each one transaction."""

from __future__ import annotations

from pynamodb.constants import ALL_OLD
from pynamodb.exceptions import TransactWriteError

from fleetlink.core.agents.authorizing_tags import authorizing_tags
from fleetlink.core.agents.model import Agent, RegistrationEvent, RegistrationToken
from fleetlink.core.agents.ports import TokenUse
from fleetlink.core.entities import AgentState, AuditRecord, Page
from fleetlink.core.errors import Conflict
from fleetlink.store import keys
from fleetlink.store.agents.items import (
    TOKEN_RETENTION_AFTER_EXPIRY_S,
    AgentPresenceItem,
    AgentProfileItem,
    EvidenceItem,
    RegistrationTokenItem,
    _consume_token,
    _event_item,
    _evidence,
    _profile_item,
    _tag_members,
    _token_unusable,
)
from fleetlink.store.agents.repository import DynamoAgentRepository
from fleetlink.store.audit import audit_item
from fleetlink.store.base import entity, transaction
from fleetlink.store.conditions import failed_conditions
from fleetlink.store.cursors import CursorPaged, last_key_of
from fleetlink.store.errors import translates_store_errors


@translates_store_errors
class DynamoRegistrationStore(CursorPaged):
    def create_token(self, token: RegistrationToken, audit: AuditRecord) -> None:
        gsi1pk, gsi1sk = keys.token_list_keys(token.token_id)
        item = RegistrationTokenItem(
            keys.token_pk(token.token_id),
            keys.SINGLETON_SK,
            ttl=token.expires_at // 1000 + TOKEN_RETENTION_AFTER_EXPIRY_S,
            gsi1pk=gsi1pk,
            gsi1sk=gsi1sk,
            **token.model_dump(mode="json"),
        )
        with transaction() as tx:
            tx.save(item, condition=RegistrationTokenItem.pk.does_not_exist())
            tx.save(audit_item(audit))

    def get_token(self, token_id: str) -> RegistrationToken | None:
        """Strongly consistent: a revocation that committed is seen."""
        try:
            item = RegistrationTokenItem.get(keys.token_pk(token_id), keys.SINGLETON_SK, consistent_read=True)
        except RegistrationTokenItem.DoesNotExist:
            return None
        return entity(RegistrationToken, item)

    def list_tokens(self, *, limit: int, cursor: str | None) -> Page[RegistrationToken]:
        scope = "tokens"
        last_key = last_key_of(self._cursors.open(scope, cursor)) if cursor is not None else None
        results = RegistrationTokenItem.token_list.query(
            keys.TOKEN_LIST_PK, scan_index_forward=False, limit=limit, last_evaluated_key=last_key
        )
        tokens = [entity(RegistrationToken, item) for item in results]
        last_key = results.last_evaluated_key
        next_cursor = self._cursors.seal(scope, {"k": last_key}) if last_key is not None else None
        return Page[RegistrationToken](items=tokens, cursor=next_cursor)

    def revoke_token(self, token_id: str, *, now_ms: int, audit: AuditRecord) -> RegistrationToken | None:
        token = self.get_token(token_id)
        if token is None or token.revoked_at is not None:
            return token
        item = RegistrationTokenItem(keys.token_pk(token_id), keys.SINGLETON_SK)
        try:
            with transaction() as tx:
                tx.update(
                    item,
                    actions=[RegistrationTokenItem.revoked_at.set(now_ms)],
                    condition=RegistrationTokenItem.pk.exists()
                    & RegistrationTokenItem.revoked_at.does_not_exist(),
                )
                tx.save(audit_item(audit))
        except TransactWriteError as error:
            if failed_conditions(error):  # revoked meanwhile
                return self.get_token(token_id)
            raise
        return token.model_copy(update={"revoked_at": now_ms})

    def agents_seen_with(self, fingerprint: str, machine_id: str, limit: int) -> list[Agent]:
        agent_ids: dict[str, None] = {}
        for pk in (keys.evidence_pk("fpr", fingerprint), keys.evidence_pk("mid", machine_id)):
            for item in EvidenceItem.query(pk, limit=limit):
                agent_ids[item.agent_id] = None
        return DynamoAgentRepository.agents(list(agent_ids)) if agent_ids else []

    def register_new(self, agent: Agent, event: RegistrationEvent, token_use: TokenUse) -> None:
        """Profile, presence, history, evidence, token use and tag index in one transaction."""
        try:
            with transaction() as tx:
                _consume_token(tx, token_use)
                tx.save(_profile_item(agent), condition=AgentProfileItem.pk.does_not_exist())
                tx.save(AgentPresenceItem(keys.agent_pk(agent.agent_id), keys.AGENT_PRESENCE_SK))
                tx.save(_event_item(event))
                for evidence in _evidence(agent):
                    tx.save(evidence)
                for member in _tag_members(agent.agent_id, authorizing_tags(agent).items()):
                    tx.save(member)
        except TransactWriteError as error:
            if failed_conditions(error):
                raise _token_unusable() from error
            raise

    def save_identity(self, agent: Agent, event: RegistrationEvent, token_use: TokenUse | None) -> None:
        """Profile (only while active, and unchanged since read), history event, evidence, token use."""
        try:
            with transaction() as tx:
                if token_use:
                    _consume_token(tx, token_use)
                tx.save(
                    _profile_item(agent),
                    condition=AgentProfileItem.state == AgentState.ACTIVE.value,
                    return_values=ALL_OLD,
                )
                tx.save(_event_item(event))
                for evidence in _evidence(agent):
                    tx.save(evidence)
        except TransactWriteError as error:
            failed = failed_conditions(error)
            if AgentProfileItem.__name__ in failed:
                raise Conflict("the agent changed meanwhile; retry", code="concurrent-update") from error
            if failed:
                raise _token_unusable() from error
            raise
