"""Use cases: registration tokens, registering new agents, re-registering and recovering known ones.

The key is the identity. Keeping an agent id takes its current key (re-registration, key rotation)
or an operator's recovery token minted for that id; a registration token with a new key always
makes a new agent. The fingerprint and hardware are evidence, scored and recorded, never a
credential.
"""

from __future__ import annotations

from dataclasses import dataclass

from fleetlink.core.agents.authorizing_tags import registration_tags
from fleetlink.core.agents.commands import MintRegistrationToken, RegisterAgent
from fleetlink.core.agents.model import (
    Agent,
    RegistrationEvent,
    RegistrationEventKind,
    RegistrationToken,
    Resemblance,
    TokenPurpose,
)
from fleetlink.core.agents.ports import AgentRepository, RegistrationStore, TokenUse
from fleetlink.core.agents.similarity import MIN_TRUSTED_SIMILARITY, similarity_score
from fleetlink.core.agents.tokens import (
    format_token,
    hash_secret,
    new_token_secret,
    parse_token,
    secret_matches,
)
from fleetlink.core.audit import changes_between, created
from fleetlink.core.clock import Clock
from fleetlink.core.copying import copied
from fleetlink.core.entities import AgentState, AuditRecord, KeyAlg, Page
from fleetlink.core.errors import (
    Conflict,
    Forbidden,
    NotFound,
    TokenUnusable,
    Unauthenticated,
)
from fleetlink.core.ids import IdPrefix, new_id

#: How many known agents a new registration is compared with, per piece of evidence.
RESEMBLANCE_CANDIDATES = 10


@dataclass(frozen=True)
class MintedToken:
    token: str
    record: RegistrationToken


@dataclass(frozen=True)
class RegistrationOutcome:
    agent_id: str
    event: RegistrationEventKind
    similarity_score: int | None
    name: str | None = None
    #: Agents seen on the same machine that carry the same name (names are not unique: a warning).
    same_name: tuple[str, ...] = ()


class RegistrationService:
    def __init__(self, store: RegistrationStore, agents: AgentRepository, clock: Clock) -> None:
        self._store = store
        self._agents = agents
        self._clock = clock

    # --- tokens ------------------------------------------------------------------------

    def mint_token(self, command: MintRegistrationToken, actor: str) -> MintedToken:
        return self.mint(
            actor,
            ttl_seconds=command.ttl_seconds,
            max_uses=command.max_uses,
            tags=command.tags,
            name_prefix=command.name_prefix,
        )

    def mint(
        self,
        actor: str,
        *,
        ttl_seconds: int,
        max_uses: int,
        purpose: TokenPurpose = TokenPurpose.REGISTRATION,
        agent_id: str | None = None,
        tags: dict[str, str] | None = None,
        name_prefix: str | None = None,
    ) -> MintedToken:
        """A new token: the secret is returned once and stored only as a hash."""
        now = self._clock.now_ms()
        token_id = new_id(IdPrefix.TOKEN, now)
        secret = new_token_secret()
        record = RegistrationToken(
            token_id=token_id,
            secret_hash=hash_secret(secret),
            purpose=purpose,
            agent_id=agent_id,
            name_prefix=name_prefix,
            tags=tags or {},
            max_uses=max_uses,
            expires_at=now + ttl_seconds * 1000,
            created_at=now,
            created_by=actor,
        )
        audit = AuditRecord.of(
            actor,
            f"{purpose.value}_token.create",
            token_id,
            now,
            changes=created(record.model_dump(mode="json", exclude={"secret_hash", "uses"})),
        )
        self._store.create_token(record, audit)
        return MintedToken(token=format_token(token_id, secret), record=record)

    def list_tokens(self, *, limit: int, cursor: str | None) -> Page[RegistrationToken]:
        return self._store.list_tokens(limit=limit, cursor=cursor)

    def revoke_token(self, token_id: str, actor: str) -> RegistrationToken:
        """Revoke a token (idempotent); a registration spending it after this commits fails."""
        now = self._clock.now_ms()
        audit = AuditRecord.of(
            actor, "token.revoke", token_id, now, changes=changes_between({}, {"revoked_at": now})
        )
        revoked = self._store.revoke_token(token_id, now_ms=now, audit=audit)
        if revoked is None:
            raise NotFound(f"no token {token_id}", code="token-not-found")
        return revoked

    def redeem(self, bearer_token: str | None) -> RegistrationToken:
        """The token behind the bearer string, if it may still be used (the write re-checks)."""
        now = self._clock.now_ms()
        if not bearer_token:
            raise Unauthenticated("a registration token is required", code="registration-token-missing")
        parsed = parse_token(bearer_token)
        token = self._store.get_token(parsed[0]) if parsed else None
        if parsed is None or token is None or not secret_matches(parsed[1], token.secret_hash):
            raise Unauthenticated("the registration token is not valid", code="registration-token-invalid")
        # The caller holds this token's secret: it may learn why the token no longer works.
        if token.revoked_at is not None:
            raise TokenUnusable(
                f"registration token {token.token_id} was revoked by an operator",
                code="registration-token-revoked",
            )
        if token.expires_at <= now:
            raise TokenUnusable(
                f"registration token {token.token_id} expired", code="registration-token-expired"
            )
        if token.uses >= token.max_uses:
            raise TokenUnusable(
                f"registration token {token.token_id} is used up: all {token.max_uses} registration(s) "
                "it allowed were made",
                code="registration-token-used-up",
            )
        return token

    # --- registration --------------------------------------------------------------------

    def register(self, command: RegisterAgent, token: RegistrationToken) -> RegistrationOutcome:
        """A new key with a redeemed token: a new agent, or (recovery token) the token's agent."""
        if token.purpose is TokenPurpose.RECOVERY:
            return self._recover(command, token)
        now = self._clock.now_ms()
        tags, requested_tags = registration_tags(token.tags, command.tags)
        agent_id = new_id(IdPrefix.AGENT, now)
        hostname = command.hardware.hostname.split(".")[0].lower()
        agent = copied(
            Agent,
            command,
            agent_id=agent_id,
            name=command.name or _default_name(token.name_prefix, hostname, command.name_suffix),
            tags=tags,
            requested_tags=requested_tags,
            registered_at=now,
            updated_at=now,
        )
        known = self._store.agents_seen_with(
            command.fingerprint, command.hardware.machine_id, RESEMBLANCE_CANDIDATES
        )
        event = _event(
            agent,
            RegistrationEventKind.REGISTER,
            now,
            token_id=token.token_id,
            key_changed=True,
            resembles=_resemblance(command, known),
        )
        self._store.register_new(agent, event, TokenUse(token.token_id, now))
        same_name = tuple(
            other.agent_id for other in known if other.name == agent.name and other.state is AgentState.ACTIVE
        )
        return RegistrationOutcome(agent_id, RegistrationEventKind.REGISTER, None, agent.name, same_name)

    def re_register(self, caller: Agent, command: RegisterAgent) -> RegistrationOutcome:
        """Restart or hardware change of an agent authenticated by its current key: same id, no token."""
        if not holds_key(caller, command.key_alg, command.public_key):
            raise Conflict(
                "re-registration keeps the current key; rotate it with POST /v1/agents/{agent_id}/keys",
                code="key-change-needs-rotation",
            )
        now = self._clock.now_ms()
        score = similarity_score(caller.hardware, command.hardware)
        updated = caller.model_copy(
            update={
                "fingerprint": command.fingerprint,
                "encryption_public_key": command.encryption_public_key or caller.encryption_public_key,
                "hardware": command.hardware,
                "capabilities": command.capabilities or caller.capabilities,
                "agent_version": command.agent_version or caller.agent_version,
                "name": command.name or caller.name,
                "updated_at": now,
            }
        )
        event = _event(updated, RegistrationEventKind.RE_REGISTER, now, score=score)
        self._store.save_identity(updated, event, None)
        return RegistrationOutcome(caller.agent_id, RegistrationEventKind.RE_REGISTER, score)

    def _recover(self, command: RegisterAgent, token: RegistrationToken) -> RegistrationOutcome:
        """The one deliberate way to replace a lost key: the token's agent takes the new key."""
        assert token.agent_id is not None
        view = self._agents.get_view(token.agent_id, consistent=True)
        if view is None:
            raise Unauthenticated("the recovery token's agent is gone", code="registration-token-invalid")
        agent = view.agent
        if agent.state is AgentState.REVOKED:
            raise Forbidden("this agent is revoked", code="agent-revoked")
        now = self._clock.now_ms()
        score = similarity_score(agent.hardware, command.hardware)
        updated = agent.model_copy(
            update={
                "fingerprint": command.fingerprint,
                "key_alg": command.key_alg,
                "public_key": command.public_key,
                # secrets sealed to the old encryption key are lost with it
                "encryption_public_key": command.encryption_public_key,
                "hardware": command.hardware,
                "capabilities": command.capabilities or agent.capabilities,
                "agent_version": command.agent_version or agent.agent_version,
                "updated_at": now,
            }
        )
        event = _event(
            updated,
            RegistrationEventKind.RECOVER,
            now,
            score=score,
            key_changed=True,
            token_id=token.token_id,
        )
        self._store.save_identity(updated, event, TokenUse(token.token_id, now))
        return RegistrationOutcome(agent.agent_id, RegistrationEventKind.RECOVER, score)


def _resemblance(command: RegisterAgent, known: list[Agent]) -> Resemblance | None:
    """The known agent this hardware most resembles, if any (never handed anything: evidence)."""
    best: Resemblance | None = None
    for agent in known:
        same = agent.fingerprint == command.fingerprint
        score = similarity_score(agent.hardware, command.hardware)
        if not same and score < MIN_TRUSTED_SIMILARITY:
            continue
        candidate = Resemblance(agent_id=agent.agent_id, score=score, same_fingerprint=same)
        if best is None or (candidate.same_fingerprint, candidate.score) > (
            best.same_fingerprint,
            best.score,
        ):
            best = candidate
    return best


def _default_name(prefix: str | None, hostname: str, suffix: str | None) -> str:
    """``<prefix>-<hostname>-<suffix>``, each part when given (at most 63 characters)."""
    return "-".join(part for part in (prefix, hostname, suffix) if part)[:63]


def _event(
    agent: Agent,
    kind: RegistrationEventKind,
    now: int,
    *,
    score: int | None = None,
    key_changed: bool = False,
    token_id: str | None = None,
    resembles: Resemblance | None = None,
    success: bool = True,
    reason: str | None = None,
) -> RegistrationEvent:
    return RegistrationEvent(
        event_id=new_id(IdPrefix.AUDIT, now),
        agent_id=agent.agent_id,
        event=kind,
        success=success,
        similarity_score=score,
        key_changed=key_changed,
        token_id=token_id,
        reason=reason,
        hardware=agent.hardware,
        at=now,
        resembles=resembles,
    )


def identity_event(
    agent: Agent, kind: RegistrationEventKind, now: int, *, key_changed: bool = False
) -> RegistrationEvent:
    """A history event for ``agent`` as it is now (key rotation)."""
    return _event(agent, kind, now, key_changed=key_changed)


def holds_key(agent: Agent, key_alg: KeyAlg, public_key: str) -> bool:
    """Whether this is the agent's current key (PEM compared without its line breaks)."""
    return agent.key_alg == key_alg and "".join(agent.public_key.split()) == "".join(public_key.split())
