"""The composition root: what a handler uses, built on first use and per capability (never at import).

``Deps`` holds the settings and the clock; each capability's repositories and services are built
(and their modules imported) only when a route first asks for them, so a function loads only the
capabilities its routes use: the registration function never imports the task modules.

Why a locator (``get_deps``/``set_deps``) and not Powertools' ``Depends`` with
``dependency_overrides`` (which the pinned Powertools, 3.37, has): ``Depends`` is resolved only for
route handlers and function-based middlewares, per invocation and per resolver. Deps are needed
where it does not reach: the class-based step that authenticates before the body is parsed
(``fleetlink.api.resolver.AuthenticateThenValidate``: Powertools leaves class middlewares out of
``Depends``) and the scheduled duties (no resolver at all). A
process also holds one resolver per function (the dev stack and the tests hold all of them) sharing
one ``Deps``: one table binding and one client (the fault injector attaches to it), kept across warm
invocations. ``set_deps`` swaps that one object for all of them at once; overrides would have to be
repeated on every resolver and still leave the duties and the authentication step on a locator, so
there would be two ways to reach the same object. Routes therefore call ``get_deps()`` like the rest.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

from fleetlink.api.settings import Settings
from fleetlink.core.clock import Clock, SystemClock

if TYPE_CHECKING:
    from fleetlink.api.permissions import BucketAccess
    from fleetlink.core.agents.decommission import DecommissionService
    from fleetlink.core.agents.ports import AgentRepository, NonceStore, RegistrationStore
    from fleetlink.core.agents.recovery import RecoveryService
    from fleetlink.core.agents.registration import RegistrationService
    from fleetlink.core.agents.service import AgentService
    from fleetlink.core.heartbeat import HeartbeatService
    from fleetlink.core.relay.ports import RelayRepository
    from fleetlink.core.relay.service import RecordService
    from fleetlink.core.releases.service import ReleaseService
    from fleetlink.core.tasks.output import OutputService
    from fleetlink.core.tasks.output_objects import OutputObjectsService
    from fleetlink.core.tasks.ports import TaskRepository
    from fleetlink.core.tasks.service import TaskService
    from fleetlink.core.tunnels.ports import TunnelRepository
    from fleetlink.core.tunnels.service import TunnelService
    from fleetlink.store.audit import DynamoAuditLog
    from fleetlink.store.buckets import PresignedBucket
    from fleetlink.store.cursors import CursorCodec


class Deps:
    """Settings, clock, and one lazily built provider per capability (cached for the container)."""

    def __init__(self, settings: Settings, clock: Clock) -> None:
        self.settings = settings
        self.clock = clock

    @cached_property
    def cursors(self) -> CursorCodec:
        """Seals and opens every list's cursors with the configured key (see ``Settings.cursor_key``)."""
        from fleetlink.store.cursors import CursorCodec

        settings = self.settings
        arn = settings.cursor_key_secret_arn
        if settings.cursor_key is None and arn:
            from fleetlink.api.settings import cursor_key_from_secret

            return CursorCodec(lambda: cursor_key_from_secret(arn, settings.region))
        return CursorCodec(settings.cursor_key)

    # --- agents ----------------------------------------------------------------------------

    @cached_property
    def agents(self) -> AgentRepository:
        from fleetlink.store.agents import DynamoAgentRepository

        return DynamoAgentRepository(self.cursors)

    @cached_property
    def registrations(self) -> RegistrationStore:
        from fleetlink.store.agents import DynamoRegistrationStore

        return DynamoRegistrationStore(self.cursors)

    @cached_property
    def nonces(self) -> NonceStore:
        from fleetlink.store.agents import DynamoNonceStore

        return DynamoNonceStore()

    @cached_property
    def registration(self) -> RegistrationService:
        from fleetlink.core.agents.registration import RegistrationService

        return RegistrationService(self.registrations, self.agents, self.clock)

    @cached_property
    def recovery(self) -> RecoveryService:
        from fleetlink.core.agents.recovery import RecoveryService

        return RecoveryService(self.registration, self.registrations, self.agents, self.clock)

    @cached_property
    def agent_service(self) -> AgentService:
        from fleetlink.core.agents.service import AgentService

        return AgentService(self.agents, self.clock, self.settings.heartbeat_interval_s)

    @cached_property
    def decommission(self) -> DecommissionService:
        from fleetlink.core.agents.decommission import DecommissionService
        from fleetlink.store.decommission import DynamoDecommissionRepository

        return DecommissionService(
            self.agents,
            DynamoDecommissionRepository(self.cursors),
            self.clock,
            self.settings.heartbeat_interval_s,
            self.settings.deleted_agent_retention_days * 86_400,
        )

    # --- tasks -----------------------------------------------------------------------------

    @cached_property
    def tasks(self) -> TaskRepository:
        from fleetlink.store.tasks import DynamoTaskRepository

        return DynamoTaskRepository(self.settings.retention_days, self.cursors)

    @cached_property
    def task_service(self) -> TaskService:
        from fleetlink.core.tasks.service import TaskService

        return TaskService(self.tasks, self.agents, self.clock, self.settings.heartbeat_interval_s)

    @cached_property
    def output_service(self) -> OutputService:
        from fleetlink.core.tasks.output import OutputService
        from fleetlink.store.task_output import DynamoOutputRepository

        return OutputService(self.tasks, DynamoOutputRepository(), self.clock, self.settings.retention_days)

    @cached_property
    def output_objects(self) -> OutputObjectsService:
        from fleetlink.api.buckets import OUTPUT_BUCKET
        from fleetlink.core.tasks.output_objects import OutputObjectsService
        from fleetlink.store.keys import output_object_key

        bucket = self._presigned(OUTPUT_BUCKET, self.settings.output_bucket)
        return OutputObjectsService(self.output_service, bucket, output_object_key, self.clock)

    def _presigned(self, access: BucketAccess, bucket: str | None) -> PresignedBucket:
        """Presigned links to one of the registry's buckets (named by the setting ``bucket``)."""
        from fleetlink.store.buckets import PresignedBucket

        settings = self.settings
        return PresignedBucket(
            bucket, settings.region, settings.s3_endpoint, name=access.name, env=access.env
        )

    # --- tunnels ---------------------------------------------------------------------------

    @cached_property
    def tunnels(self) -> TunnelRepository:
        from fleetlink.store.tunnels import DynamoTunnelRepository

        return DynamoTunnelRepository(self.settings.tunnel_event_retention_days, self.cursors)

    @cached_property
    def tunnel_service(self) -> TunnelService:
        from fleetlink.core.tunnels.service import TunnelService

        return TunnelService(self.tunnels, self.agents, _seal, self.clock, self.settings.heartbeat_interval_s)

    # --- relay sync ------------------------------------------------------------------------

    @cached_property
    def relay(self) -> RelayRepository:
        from fleetlink.store.relay import DynamoRelayRepository

        return DynamoRelayRepository(self.cursors)

    @cached_property
    def record_service(self) -> RecordService:
        from fleetlink.core.relay.service import RecordService

        return RecordService(self.relay, self.clock)

    # --- the audit log (entries are written by each capability's store, beside the change) --

    @cached_property
    def audit_log(self) -> DynamoAuditLog:
        from fleetlink.store.audit import DynamoAuditLog

        return DynamoAuditLog(self.cursors)

    # --- releases ---------------------------------------------------------------------------

    @cached_property
    def release_service(self) -> ReleaseService:
        from fleetlink.api.buckets import RELEASES_BUCKET
        from fleetlink.core.releases.service import ReleaseService
        from fleetlink.store.releases import DynamoReleaseRepository

        bucket = self._presigned(RELEASES_BUCKET, self.settings.releases_bucket)
        return ReleaseService(DynamoReleaseRepository(), bucket, self.clock)

    # --- the heartbeat: presence first, then every capability's part of the answer -----------

    @cached_property
    def heartbeat(self) -> HeartbeatService:
        from fleetlink.core.heartbeat import HeartbeatContributor, HeartbeatService
        from fleetlink.core.tunnels.service import TunnelsHeartbeat

        contributors: list[HeartbeatContributor] = [self.task_service, TunnelsHeartbeat()]
        return HeartbeatService(
            self.clock, self.settings.heartbeat_interval_s, self.agent_service, contributors
        )


def _seal(recipient_public_key_pem: str, plaintext: bytes, *, context: bytes) -> str:
    """Seal a secret to an agent (``fleetlink.auth.sealing``, loaded on first use); ValueError when
    the agent's key cannot be sealed to."""
    from fleetlink.auth.sealing import SealError, seal

    try:
        return seal(recipient_public_key_pem, plaintext, context=context)
    except SealError as error:
        raise ValueError(str(error)) from error


def build_deps(settings: Settings, clock: Clock | None = None) -> Deps:
    """Deps on DynamoDB for these settings (binds the table; no repository is built yet)."""
    from fleetlink.store.base import bind_table

    bind_table(settings.table_name, settings.region, settings.dynamodb_endpoint)
    from fleetlink.store.audit import configure_retention

    configure_retention(settings.audit_retention_days)
    return Deps(settings, clock or SystemClock())


_current: Deps | None = None


def get_deps() -> Deps:
    """The container's deps: built from the environment on first use."""
    global _current
    if _current is None:
        _current = build_deps(Settings.from_env())
    return _current


def set_deps(deps: Deps | None) -> None:
    """Use these deps from now on (tests, the dev stack); None rebuilds from the environment."""
    global _current
    _current = deps
