"""The agent daemon (``fleetlink agent run``): a supervisor running the agent's services side by side.

Each capability's agent-side work (tasks now; tunnels and relay sync next) is a :class:`Service`
stepping in a thread of its own. The supervisor owns what they share:

- the heartbeat, itself a service (:class:`HeartbeatService`): each beat carries every service's
  :meth:`~Service.heartbeat_metrics`, and its answer goes to every service's
  :meth:`~Service.on_heartbeat`, after which each takes a round of :meth:`~Service.step`;
- :meth:`Supervisor.wake` to run a service's next round now;
- one back-off policy (exponential, with jitter) for transient API errors raised from ``step``, and
  for a state dir that takes no writes (full or read-only: the service waits for space, named in one
  log line, while the heartbeat goes on); an error retrying cannot fix (e.g. a revoked agent) stops
  every service, and :meth:`Supervisor.run` raises it once they have stopped;
- shutdown: graceful (services stop in reverse order, the heartbeat last, so leases stay renewed
  while tasks drain) or urgent; :meth:`Supervisor.signals` maps a first SIGINT/SIGTERM to graceful
  and a second to urgent.
"""

from __future__ import annotations

import functools
import logging
import random
import signal
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from types import FrameType
from typing import Protocol

from fleetlink.agent.disk import takes_no_writes
from fleetlink.client.backoff import Backoff
from fleetlink.client.http import FleetlinkApiError, FleetlinkClientError, is_transient
from fleetlink.contract.agents import HeartbeatAck
from fleetlink.core.heartbeat import MAX_HEARTBEAT_METRICS

log = logging.getLogger(__name__)

#: Until the first heartbeat answer says otherwise (the server's default interval).
DEFAULT_INTERVAL_S = 60.0
#: Before the first heartbeat, a random wait of up to this many seconds, so that agents restarted
#: together (a fleet-wide update, a power cut) do not all beat at once.
DEFAULT_FIRST_BEAT_JITTER_S = 5.0
#: A service that only reacts to heartbeats steps this often.
IDLE_S = 3600.0

_random = random.SystemRandom()


class Service(Protocol):
    """One capability's work inside ``fleetlink agent run``; the supervisor runs each in its own thread.

    Every service has the same shape: it is handed its store and its API client when built (by
    :mod:`fleetlink.agent.app`), which also closes them once the daemon stopped; the supervisor
    binds its wake, then calls ``start`` once, ``step`` in a loop, ``on_heartbeat`` and
    ``heartbeat_metrics`` around each beat, and ``stop`` (then ``hurry``, if a stop turns urgent).
    """

    name: str

    def bind(self, wake: Callable[[], None]) -> None:
        """How to run this service's next round now (done by the supervisor)."""

    def start(self) -> None:
        """Recover local state; called once before the loop."""

    def step(self) -> float:
        """One round of work; returns seconds until the next round it wants (it may be woken sooner)."""

    def on_heartbeat(self, ack: HeartbeatAck) -> None:
        """React to the heartbeat answer (e.g. a changed tunnels_version: fetch the desired state)."""

    def heartbeat_metrics(self) -> dict[str, float]:
        """Its part of the heartbeat's ``metrics``."""

    def stop(self, *, urgent: bool = False) -> None:
        """Release resources, once, at shutdown (``urgent``: without waiting for work to finish)."""

    def hurry(self) -> None:
        """A graceful stop in progress has become urgent (a second Ctrl-C)."""


class BaseService:
    """A :class:`Service` with no-op defaults; the supervisor binds :meth:`wake` to its loop."""

    name = "service"

    def __init__(self) -> None:
        self._wake_bound: Callable[[], None] = lambda: None

    def bind(self, wake: Callable[[], None]) -> None:
        self._wake_bound = wake

    def wake(self) -> None:
        """Run this service's next round now (a no-op until the supervisor bound it)."""
        self._wake_bound()

    def start(self) -> None:
        return None

    def step(self) -> float:
        return IDLE_S

    def on_heartbeat(self, ack: HeartbeatAck) -> None:
        return None

    def heartbeat_metrics(self) -> dict[str, float]:
        return {}

    def stop(self, *, urgent: bool = False) -> None:
        return None

    def hurry(self) -> None:
        """A graceful stop in progress has become urgent (a second Ctrl-C)."""
        return


class AgentService(BaseService):
    """A service acting for one agent (``agent_id``) at the pace the server sets in each heartbeat
    answer (``interval_s``, :data:`DEFAULT_INTERVAL_S` until the first)."""

    def __init__(self, agent_id: str) -> None:
        super().__init__()
        if not agent_id:
            raise ValueError("agent_id is required")
        self.agent_id = agent_id
        self.interval_s = DEFAULT_INTERVAL_S

    def follow_interval(self, ack: HeartbeatAck) -> None:
        """Take the heartbeat interval the server asked for (at least a second)."""
        self.interval_s = float(max(1, ack.heartbeat_interval_s))


class HeartbeatService(AgentService):
    """Reports liveness at the server's interval, with every service's metrics; hands out the answer.

    ``running_executions`` lists the executions whose leases each beat renews (the tasks service's).
    """

    name = "heartbeat"

    def __init__(
        self,
        api: HeartbeatApi,
        agent_id: str,
        *,
        running_executions: Callable[[], list[str]] = list,
        host_metrics: Callable[[], Mapping[str, float]] | None = None,
        first_beat_jitter_s: float = DEFAULT_FIRST_BEAT_JITTER_S,
    ) -> None:
        super().__init__(agent_id)
        self.api = api
        self.draining = False
        self._running = running_executions
        self._host_metrics = host_metrics
        self._first_wait_s: float | None = (
            _random.uniform(0, first_beat_jitter_s) if first_beat_jitter_s > 0 else None
        )
        self._peers: Sequence[Service] = ()
        self._wake_peer: Callable[[str], None] = lambda name: None
        self._left_out: list[str] = []

    def attach(self, peers: Sequence[Service], wake: Callable[[str], None]) -> None:
        """The services this heartbeat speaks for, and how to wake one (done by the supervisor)."""
        self._peers, self._wake_peer = tuple(peers), wake

    def metrics(self) -> dict[str, float]:
        """The services' metrics, then the host's, at most as many as the server takes
        (``MAX_HEARTBEAT_METRICS``): what is past the limit is left out, named once in the log, rather
        than the heartbeat refused."""
        values: dict[str, float] = {}
        for peer in self._peers:
            try:
                values.update(peer.heartbeat_metrics())
            except Exception:
                log.exception("%s: cannot collect its heartbeat metrics", peer.name)
        host = dict(self._host_metrics()) if self._host_metrics else {}
        values |= {name: value for name, value in host.items() if name not in values}
        if len(values) <= MAX_HEARTBEAT_METRICS:
            return values
        kept = dict(list(values.items())[:MAX_HEARTBEAT_METRICS])
        left_out = sorted(set(values) - set(kept))
        if left_out != self._left_out:
            self._left_out = left_out
            log.warning(
                "heartbeat: %d metrics is over the limit of %d; left out: %s",
                len(values),
                MAX_HEARTBEAT_METRICS,
                ", ".join(left_out),
            )
        return kept

    def step(self) -> float:
        if self._first_wait_s is not None:
            wait_s, self._first_wait_s = self._first_wait_s, None
            return wait_s
        ack = self.api.heartbeat(
            self.agent_id,
            status="draining" if self.draining else "ok",
            metrics=self.metrics(),
            running_executions=self._running(),
        )
        self.follow_interval(ack)
        for peer in self._peers:
            try:
                peer.on_heartbeat(ack)
            except Exception:
                log.exception("%s: failed to take the heartbeat answer", peer.name)
            self._wake_peer(peer.name)
        return self.interval_s


class HeartbeatApi(Protocol):
    """The call the heartbeat makes (FleetlinkClient implements it)."""

    def heartbeat(
        self,
        agent_id: str,
        status: str | None = None,
        metrics: Mapping[str, float] | None = None,
        running_executions: list[str] | None = None,
    ) -> HeartbeatAck: ...


class _Slot:
    """A service's thread and the event that wakes it."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.wake = threading.Event()
        self.halt = threading.Event()
        self.thread: threading.Thread | None = None
        self.failures = 0
        #: Why its last round could not write to the state dir (None: it could).
        self.disk_problem: str | None = None


class Supervisor:
    """Runs the heartbeat and the given services, each in its own thread, until stopped."""

    def __init__(
        self, heartbeat: HeartbeatService, services: Sequence[Service], *, backoff: Backoff | None = None
    ) -> None:
        names = [heartbeat.name, *(service.name for service in services)]
        if len(set(names)) != len(names):
            raise ValueError(f"service names must be unique: {names}")
        self.heartbeat = heartbeat
        self.backoff = backoff or Backoff(base_s=1.0, max_s=30.0)
        self._slots = {service.name: _Slot(service) for service in (heartbeat, *services)}
        heartbeat.attach(services, self.wake)
        for service in (heartbeat, *services):
            service.bind(functools.partial(self.wake, service.name))
        self._stopping = threading.Event()
        self._urgent = threading.Event()
        self._changed = threading.Event()
        self._fatal: BaseException | None = None

    @property
    def services(self) -> list[Service]:
        return [slot.service for slot in self._slots.values()]

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def wake(self, name: str) -> None:
        """Run service ``name``'s next round now."""
        self._slots[name].wake.set()

    def request_stop(self, *, urgent: bool = False) -> None:
        """Stop (gracefully: work in progress may finish; urgently: now). A second, urgent request
        hurries a graceful stop under way."""
        if urgent and not self._urgent.is_set():
            self._urgent.set()
            for slot in self._slots.values():
                if self._stopping.is_set():
                    slot.service.hurry()
        self._stopping.set()
        self.heartbeat.draining = True
        self._changed.set()

    def run(self) -> None:
        """Start every service, step them until :meth:`request_stop` (or an error retrying cannot fix),
        then stop them, the heartbeat last; raise that error, if any, once all have stopped."""
        started: list[_Slot] = []
        try:
            for slot in self._slots.values():
                slot.service.start()
                started.append(slot)
        except BaseException as exc:
            self._fatal = exc
            self._urgent.set()
            self._stopping.set()
        else:
            for slot in started:
                slot.thread = threading.Thread(
                    target=self._loop, args=(slot,), name=f"agent-{slot.service.name}", daemon=True
                )
                slot.thread.start()
            while not self._stopping.is_set():
                self._changed.wait(1.0)  # woken by request_stop; the timeout lets signals in
        self._shutdown(started)
        if self._fatal is not None:
            raise self._fatal

    def _loop(self, slot: _Slot) -> None:
        while not slot.halt.is_set():
            slot.wake.clear()
            try:
                wait_s = slot.service.step()
                slot.failures = 0
            except FleetlinkClientError as error:
                if isinstance(error, FleetlinkApiError) and not is_transient(error):
                    self._fail(slot, error)
                    return
                slot.failures += 1
                wait_s = self.backoff.delay_s(slot.failures)
                log.warning("%s failed (%s); retrying in %.0f s", slot.service.name, error, wait_s)
            except Exception as error:
                if (problem := takes_no_writes(error)) is None:
                    log.exception("%s failed; stopping the agent", slot.service.name)
                    self._fail(slot, error)
                    return
                slot.failures += 1
                wait_s = self.backoff.delay_s(slot.failures)
                if slot.disk_problem is None:
                    log.warning(
                        "%s cannot write to the state dir (%s); it waits for space, heartbeats go on",
                        slot.service.name,
                        problem,
                    )
                slot.disk_problem = problem
                if not slot.halt.is_set():
                    slot.wake.wait(wait_s)
                continue
            if slot.disk_problem is not None:
                log.warning("%s writes to the state dir again", slot.service.name)
                slot.disk_problem = None
            if not slot.halt.is_set() and wait_s > 0:
                slot.wake.wait(wait_s)

    def _fail(self, slot: _Slot, error: BaseException) -> None:
        if self._fatal is None:
            self._fatal = error
        self.request_stop(urgent=True)

    def _shutdown(self, started: Sequence[_Slot]) -> None:
        """Halt and stop each service in reverse order: the heartbeat, first to start, stops last."""
        for slot in reversed(started):
            slot.halt.set()
            slot.wake.set()
            if slot.thread is not None and slot.thread is not threading.current_thread():
                slot.thread.join()
            try:
                slot.service.stop(urgent=self._urgent.is_set())
            except Exception:
                log.exception("%s: failed to stop", slot.service.name)

    @contextmanager
    def signals(self, on_signal: Callable[[bool], None] = lambda urgent: None) -> Iterator[None]:
        """While inside, SIGINT/SIGTERM stop gracefully, and a second one urgently (main thread only).
        ``on_signal(urgent)`` runs after each, e.g. to say what happens now."""

        def handle(signum: int, frame: FrameType | None) -> None:
            urgent = self.stopping
            self.request_stop(urgent=urgent)
            on_signal(urgent)

        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
