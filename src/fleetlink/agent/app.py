"""The composition root of the node: builds the daemon from the identity, the state dir and options.

``fleetlink agent run`` (and anything else that runs an agent) calls :func:`build_agent` and runs
what it answers; the command line keeps only flags and printing. Every service is handed its store
and its client here, and :meth:`AgentApp.close` closes them (services never close what they were
handed). A new service is one module under ``agent/`` plus one line in :func:`build_agent`.
"""

from __future__ import annotations

import fcntl
import functools
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from fleetlink.agent.daemon import DEFAULT_FIRST_BEAT_JITTER_S, HeartbeatService, Supervisor
from fleetlink.agent.db import db_path
from fleetlink.agent.disk import StateDirHealth
from fleetlink.agent.identity import Identity, IdentityStore, key_alg_of
from fleetlink.agent.relay.service import RelayService
from fleetlink.agent.relay.store import RecordStore
from fleetlink.agent.sequence import HeartbeatSequence
from fleetlink.agent.tasks.handlers import HandlerRegistry
from fleetlink.agent.tasks.service import RunnerEvent, TasksService
from fleetlink.agent.tasks.store import AgentStore
from fleetlink.agent.tunnels.reconciler import SecretOpener
from fleetlink.agent.tunnels.service import TunnelsService
from fleetlink.agent.tunnels.store import EventRecord, TunnelStore
from fleetlink.agent.updates import finish_pending_upgrade
from fleetlink.auth.sealing import ENCRYPTION_KEY_FILE, EncryptionPrivateKey, load_encryption_key, open_sealed
from fleetlink.client.agent import FleetlinkClient
from fleetlink.client.http import FleetlinkClientError
from fleetlink.client.relay import RelayClient
from fleetlink.core.closing import Closing

#: Held (flock) by the one daemon running from a state dir.
LOCK_FILE = "agent.lock"


class NotRegistered(FleetlinkClientError):
    """The state dir holds no usable identity (never registered, or its key does not match)."""


class AlreadyRunning(FleetlinkClientError):
    """Another daemon runs from this state dir."""


@contextmanager
def only_runner(state_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on the state dir for as long as this agent runs tasks from it."""
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    with open(state_dir / LOCK_FILE, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise AlreadyRunning(f"another `fleetlink agent run` is using {state_dir}") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@dataclass(frozen=True)
class AgentOptions:
    """How the daemon runs (the command line's flags)."""

    concurrency: int = 4
    stop_grace_s: float = 30.0
    first_beat_jitter_s: float = DEFAULT_FIRST_BEAT_JITTER_S
    #: Told of every execution's start and end (the command line prints them).
    on_event: Callable[[RunnerEvent], None] | None = None
    #: Told of every tunnel event (start, stop, health changes, errors; the command line prints them).
    on_tunnel_event: Callable[[EventRecord], None] | None = None
    host_metrics: Callable[[], Mapping[str, float]] | None = None
    registry: HandlerRegistry = field(default_factory=HandlerRegistry)


def host_metrics() -> dict[str, float]:
    """The machine's load averages (none where the platform has no ``getloadavg``)."""
    try:
        load1, load5, load15 = os.getloadavg()
    except (OSError, AttributeError):
        return {}
    return {"load1": round(load1, 3), "load5": round(load5, 3), "load15": round(load15, 3)}


def _with_state_dir(
    metrics: Callable[[], Mapping[str, float]], state_dir: StateDirHealth
) -> Callable[[], Mapping[str, float]]:
    """The host's metrics and whether the state dir takes writes (``state_dir_writable``)."""
    return lambda: {**state_dir.metrics(), **metrics()}  # first: kept if the metrics run over


def secret_opener(state_dir: Path) -> SecretOpener | None:
    """Opens secrets sealed to this agent with its encryption key (None: it registered none)."""
    path = state_dir / ENCRYPTION_KEY_FILE
    if not path.exists():
        return None
    key: EncryptionPrivateKey = load_encryption_key(path)

    def open_secret(sealed: str, *, context: bytes) -> bytes:
        return open_sealed(key, sealed, context=context)

    return open_secret


def agent_client(identities: IdentityStore) -> tuple[Identity, FleetlinkClient]:
    """The saved identity and a client signing as it (heartbeats sequenced from the state dir)."""
    identity, key = identities.load_identity(), identities.load_key()
    if identity is None or key is None:
        raise NotRegistered(f"this machine is not registered (state dir {identities.path})")
    if key_alg_of(key) is not identity.key_alg:
        raise NotRegistered(
            f"the key in {identities.key_path} does not match identity.json's {identity.key_alg.value}"
        )
    client = FleetlinkClient(
        identity.api_url,
        private_key=key,
        key_alg=identity.key_alg,
        agent_id=identity.agent_id,
        heartbeat_sequence=HeartbeatSequence.in_state_dir(identities.path).next,
    )
    return identity, client


@dataclass
class AgentApp(Closing):
    """The daemon and everything it was built from; :meth:`close` releases stores and clients."""

    identity: Identity
    state_dir: Path
    supervisor: Supervisor
    heartbeat: HeartbeatService
    tasks: TasksService
    tunnels: TunnelsService
    relay: RelayService
    registry: HandlerRegistry
    _resources: ExitStack

    @property
    def db_path(self) -> Path:
        return db_path(self.state_dir)

    def run(self) -> None:
        """Run every service until a stop (see :meth:`Supervisor.signals`) or a fatal error."""
        self.supervisor.run()

    def close(self) -> None:
        self._resources.close()


def build_agent(state_dir: str | os.PathLike[str] | None, options: AgentOptions | None = None) -> AgentApp:
    """The daemon of the agent registered in ``state_dir``: heartbeat, tasks, tunnels and relay sync."""
    options = options or AgentOptions()
    identities = IdentityStore(state_dir)
    identity, client = agent_client(identities)
    home = identities.path
    with ExitStack() as resources:
        resources.callback(client.close)
        tasks_store = resources.enter_context(AgentStore.in_state_dir(home))
        # an upgrade this process is the outcome of, settled before anything runs (agent/updates.py)
        finish_pending_upgrade(home, client, identity.agent_id, tasks_store)
        tunnel_store = resources.enter_context(TunnelStore.open(db_path(home)))
        records = resources.enter_context(RecordStore.in_state_dir(home))
        relay_client = resources.enter_context(RelayClient.from_state_dir(home))

        tasks = TasksService(
            client,
            tasks_store,
            options.registry,
            identity.agent_id,
            options.concurrency,
            listener=options.on_event,
            stop_grace_s=options.stop_grace_s,
        )
        tunnels = TunnelsService(
            agent_id=identity.agent_id,
            api=client,
            store=tunnel_store,
            state_dir=home,
            open_secret=secret_opener(home),
            on_event=options.on_tunnel_event,
        )
        relay = RelayService(records, relay_client)
        heartbeat = HeartbeatService(
            client,
            identity.agent_id,
            running_executions=tasks.running_ids,
            host_metrics=_with_state_dir(options.host_metrics or host_metrics, StateDirHealth(home)),
            first_beat_jitter_s=options.first_beat_jitter_s,
        )
        supervisor = Supervisor(heartbeat, [tasks, tunnels, relay])
        tasks.on_started = functools.partial(supervisor.wake, heartbeat.name)
        return AgentApp(
            identity=identity,
            state_dir=home,
            supervisor=supervisor,
            heartbeat=heartbeat,
            tasks=tasks,
            tunnels=tunnels,
            relay=relay,
            registry=options.registry,
            _resources=resources.pop_all(),
        )
    raise AssertionError("unreachable")  # pragma: no cover
