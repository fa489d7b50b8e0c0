"""Use cases: mint registration tokens, register and re-register agents."""

from __future__ import annotations

from dataclasses import dataclass

from fleetlink.core.clock import Clock
from fleetlink.core.commands import MintRegistrationToken, RegisterAgent
from fleetlink.core.entities import (
    MAX_TAGS,
    Agent,
    AgentState,
    AuditRecord,
    RegistrationEvent,
    RegistrationEventKind,
    RegistrationToken,
)
from fleetlink.core.errors import Conflict, Forbidden, Unauthenticated, Unprocessable
from fleetlink.core.ids import IdPrefix, new_id
from fleetlink.core.ports import AgentRepository, RegistrationStore, TokenUse
from fleetlink.core.similarity import MIN_TRUSTED_SIMILARITY, similarity_score
from fleetlink.core.tokens import format_token, hash_secret, new_token_secret, parse_token, secret_matches


@dataclass(frozen=True)
class MintedToken:
    token: str
    record: RegistrationToken


@dataclass(frozen=True)
class RegistrationOutcome:
    agent_id: str
    event: RegistrationEventKind
    similarity_score: int | None


class RegistrationService:
    def __init__(self, store: RegistrationStore, agents: AgentRepository, clock: Clock) -> None:
        self._store = store
        self._agents = agents
        self._clock = clock

    def mint_token(self, command: MintRegistrationToken, actor: str) -> MintedToken:
        now = self._clock.now_ms()
        token_id = new_id(IdPrefix.TOKEN, now)
        secret = new_token_secret()
        record = RegistrationToken(
            token_id=token_id,
            secret_hash=hash_secret(secret),
            name_prefix=command.name_prefix,
            tags=command.tags,
            max_uses=command.max_uses,
            expires_at=now + command.ttl_seconds * 1000,
            created_at=now,
            created_by=actor,
        )
        audit = AuditRecord.of(
            actor,
            "registration_token.create",
            token_id,
            now,
            max_uses=command.max_uses,
            ttl_seconds=command.ttl_seconds,
            tags=command.tags,
        )
        self._store.create_token(record, audit)
        return MintedToken(token=format_token(token_id, secret), record=record)

    def register(self, command: RegisterAgent, bearer_token: str | None) -> RegistrationOutcome:
        """Register a new fingerprint, or re-register a known one.

        A known fingerprint re-registering with its current key and similar hardware needs no
        token (agent restarts must keep working after a one-use token is spent); a new key or
        dissimilar hardware needs a valid token, like a new machine.
        """
        now = self._clock.now_ms()
        agent_id = self._store.agent_id_for_fingerprint(command.fingerprint)
        if agent_id is None:
            return self._register_new(command, self._redeem(bearer_token, now), now)
        view = self._agents.get_view(agent_id)
        if view is None:
            raise Conflict("a registration for this fingerprint is in progress; retry")
        return self._re_register(view.agent, command, bearer_token, now)

    def _register_new(
        self, command: RegisterAgent, token: RegistrationToken, now: int
    ) -> RegistrationOutcome:
        tags = {**token.tags, **command.tags}
        if len(tags) > MAX_TAGS:
            raise Unprocessable(
                f"the token's and the agent's tags together are {len(tags)}; at most {MAX_TAGS}",
                code="too-many-tags",
            )
        agent_id = new_id(IdPrefix.AGENT, now)
        hostname = command.hardware.hostname.split(".")[0].lower()
        agent = Agent(
            agent_id=agent_id,
            fingerprint=command.fingerprint,
            name=command.name or (f"{token.name_prefix}-{hostname}" if token.name_prefix else hostname),
            key_alg=command.key_alg,
            public_key=command.public_key,
            encryption_public_key=command.encryption_public_key,
            hardware=command.hardware,
            tags=tags,
            capabilities=command.capabilities,
            agent_version=command.agent_version,
            registered_at=now,
            updated_at=now,
        )
        event = self._event(agent_id, RegistrationEventKind.REGISTER, command, now, token_id=token.token_id)
        self._store.register_new(agent, event, TokenUse(token.token_id, now))
        return RegistrationOutcome(agent_id, RegistrationEventKind.REGISTER, None)

    def _re_register(
        self, agent: Agent, command: RegisterAgent, bearer_token: str | None, now: int
    ) -> RegistrationOutcome:
        score = similarity_score(agent.hardware, command.hardware)
        key_changed = agent.key_alg != command.key_alg or _pem(agent.public_key) != _pem(command.public_key)

        def fail(error: Unauthenticated | Forbidden) -> Exception:
            self._store.record_failed_registration(
                self._event(
                    agent.agent_id,
                    RegistrationEventKind.RE_REGISTER,
                    command,
                    now,
                    success=False,
                    score=score,
                    key_changed=key_changed,
                    reason=error.detail,
                )
            )
            return error

        if agent.state is AgentState.REVOKED:
            raise fail(Forbidden("this agent is revoked", code="agent-revoked"))
        token_use = None
        if key_changed or score < MIN_TRUSTED_SIMILARITY:
            try:
                token = self._redeem(bearer_token, now)
            except Unauthenticated as error:
                why = (
                    "a new key" if key_changed else f"hardware similarity {score} < {MIN_TRUSTED_SIMILARITY}"
                )
                raise fail(
                    Unauthenticated(
                        f"{why} needs a valid registration token: {error.detail}", code=error.code
                    )
                ) from None
            token_use = TokenUse(token.token_id, now)
        updated = agent.model_copy(
            update={
                "key_alg": command.key_alg,
                "public_key": command.public_key,
                "encryption_public_key": command.encryption_public_key or agent.encryption_public_key,
                "hardware": command.hardware,
                "capabilities": command.capabilities or agent.capabilities,
                "agent_version": command.agent_version or agent.agent_version,
                "name": command.name or agent.name,
                "updated_at": now,
            }
        )
        event = self._event(
            agent.agent_id,
            RegistrationEventKind.RE_REGISTER,
            command,
            now,
            score=score,
            key_changed=key_changed,
            token_id=token_use.token_id if token_use else None,
        )
        self._store.re_register(updated, event, token_use)
        return RegistrationOutcome(agent.agent_id, RegistrationEventKind.RE_REGISTER, score)

    def _redeem(self, bearer_token: str | None, now: int) -> RegistrationToken:
        """The token behind the bearer string, if it may still be used (the write re-checks)."""
        if not bearer_token:
            raise Unauthenticated("a registration token is required", code="registration-token-missing")
        parsed = parse_token(bearer_token)
        token = self._store.get_token(parsed[0]) if parsed else None
        if parsed is None or token is None or not secret_matches(parsed[1], token.secret_hash):
            raise Unauthenticated("the registration token is not valid", code="registration-token-invalid")
        if token.expires_at <= now:
            raise Unauthenticated("the registration token has expired", code="registration-token-expired")
        if token.uses >= token.max_uses:
            raise Unauthenticated("the registration token is used up", code="registration-token-used-up")
        return token

    @staticmethod
    def _event(
        agent_id: str,
        kind: RegistrationEventKind,
        command: RegisterAgent,
        now: int,
        *,
        success: bool = True,
        score: int | None = None,
        key_changed: bool = False,
        token_id: str | None = None,
        reason: str | None = None,
    ) -> RegistrationEvent:
        return RegistrationEvent(
            event_id=new_id(IdPrefix.AUDIT, now),
            agent_id=agent_id,
            event=kind,
            success=success,
            similarity_score=score,
            key_changed=key_changed,
            token_id=token_id,
            reason=reason,
            hardware=command.hardware,
            at=now,
        )


def _pem(text: str) -> str:
    return "".join(text.split())
