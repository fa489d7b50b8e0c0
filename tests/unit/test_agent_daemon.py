"""The agent daemon's supervisor: services in their own threads around one heartbeat, back-off, shutdown."""

from __future__ import annotations

import errno
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from fleetlink.agent.daemon import BaseService, HeartbeatService, Supervisor
from fleetlink.agent.disk import takes_no_writes
from fleetlink.agent.tasks.store import StoreError
from fleetlink.client.backoff import Backoff
from fleetlink.client.http import FleetlinkApiError, FleetlinkConnectionError
from fleetlink.contract.agents import HeartbeatAck
from fleetlink.core.heartbeat import MAX_HEARTBEAT_METRICS
from tests.fakes.agent_api import FakeAgentApi, api_error

AGENT_ID = "agt_01JABCDEFGHJKMNPQRSTVWXYZ0"
#: Guards against a hung test; never an assertion about speed.
DEADLINE_S = 30.0


def eventually(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not check():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.01)  # polling interval, not an assertion


@dataclass
class Recorder(BaseService):
    """A service that records what the supervisor does to it; its steps may raise queued errors."""

    name: str = "recorder"
    log: list[str] = field(default_factory=list)
    acks: list[HeartbeatAck] = field(default_factory=list)
    errors: list[Exception] = field(default_factory=list)
    steps: int = 0
    journal: list[str] | None = None

    def __post_init__(self) -> None:
        super().__init__()

    def _note(self, what: str) -> None:
        self.log.append(what)
        if self.journal is not None:
            self.journal.append(f"{self.name}:{what}")

    def start(self) -> None:
        self._note("start")

    def step(self) -> float:
        self.steps += 1
        if self.errors:
            raise self.errors.pop(0)
        return 3600.0

    def on_heartbeat(self, ack: HeartbeatAck) -> None:
        self.acks.append(ack)

    def heartbeat_metrics(self) -> dict[str, float]:
        return {f"{self.name}_steps": float(self.steps)}

    def stop(self, *, urgent: bool = False) -> None:
        self._note(f"stop urgent={urgent}")


class SentMetrics(FakeAgentApi):
    """The fake server, also keeping the metrics of every heartbeat."""

    def __init__(self) -> None:
        super().__init__()
        self.metrics: list[dict[str, float]] = []

    def heartbeat(self, agent_id: str, status: str | None = None, metrics=None, running_executions=None):  # type: ignore[no-untyped-def]
        self.metrics.append(dict(metrics or {}))
        return super().heartbeat(agent_id, status, metrics, running_executions)


@dataclass
class Daemon:
    supervisor: Supervisor
    thread: threading.Thread
    error: list[BaseException]

    def stop(self, *, urgent: bool = False) -> None:
        self.supervisor.request_stop(urgent=urgent)
        self.thread.join(DEADLINE_S)
        assert not self.thread.is_alive(), "the supervisor did not stop"


@pytest.fixture
def run_daemon() -> Iterator[Callable[..., Daemon]]:
    daemons: list[Daemon] = []

    def start(heartbeat: HeartbeatService, *services: BaseService, backoff: Backoff | None = None) -> Daemon:
        supervisor = Supervisor(heartbeat, services, backoff=backoff)
        errors: list[BaseException] = []

        def run() -> None:
            try:
                supervisor.run()
            except BaseException as exc:  # kept for the test to look at
                errors.append(exc)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        daemon = Daemon(supervisor, thread, errors)
        daemons.append(daemon)
        return daemon

    yield start
    for daemon in daemons:
        if daemon.thread.is_alive():
            daemon.stop(urgent=True)


def test_each_heartbeat_carries_every_services_metrics_and_hands_them_the_answer(
    run_daemon: Callable[..., Daemon],
) -> None:
    # Given two services under a supervisor, and a heartbeat without first-beat jitter
    api = SentMetrics()
    first, second = Recorder(name="first"), Recorder(name="second")
    heartbeat = HeartbeatService(api, AGENT_ID, host_metrics=lambda: {"load1": 0.5}, first_beat_jitter_s=0)
    run_daemon(heartbeat, first, second)
    # When the heartbeat beats
    eventually(lambda: bool(first.acks and second.acks), "both services to get the answer")
    # Then it sent the host's and both services' metrics, and each service got the ack, then a round
    assert {"load1", "first_steps", "second_steps"} <= set(api.metrics[0])
    assert first.acks[0].heartbeat_interval_s == api.interval_s
    eventually(lambda: first.steps >= 2 and second.steps >= 2, "a round after the heartbeat")


def test_metrics_past_the_servers_limit_are_left_out_not_the_heartbeat() -> None:
    # Given services whose metrics together with the host's are more than the server takes
    class Many(Recorder):
        def heartbeat_metrics(self) -> dict[str, float]:
            return {f"svc_{n:02d}": float(n) for n in range(MAX_HEARTBEAT_METRICS - 1)}

    host = {"state_dir_writable": 1.0, "load1": 0.5, "load5": 0.4}
    heartbeat = HeartbeatService(FakeAgentApi(), AGENT_ID, host_metrics=lambda: host, first_beat_jitter_s=0)
    heartbeat.attach([Many(name="many")], lambda name: None)
    # When the heartbeat gathers them
    metrics = heartbeat.metrics()
    # Then it sends exactly the limit: every service metric, then the host's in order
    assert len(metrics) == MAX_HEARTBEAT_METRICS
    assert "state_dir_writable" in metrics
    assert "load1" not in metrics
    assert "load5" not in metrics


def test_wake_runs_a_services_next_round_now(run_daemon: Callable[..., Daemon]) -> None:
    # Given a service that asks for its next round in an hour
    service = Recorder()
    daemon = run_daemon(HeartbeatService(FakeAgentApi(), AGENT_ID, first_beat_jitter_s=3600), service)
    eventually(lambda: service.steps == 1, "the first round")
    # When it is woken / Then it steps again
    daemon.supervisor.wake("recorder")
    eventually(lambda: service.steps == 2, "the woken round")


def test_first_heartbeat_waits_for_its_jitter(run_daemon: Callable[..., Daemon]) -> None:
    # Given a heartbeat whose first beat may wait up to an hour
    api = FakeAgentApi()
    daemon = run_daemon(HeartbeatService(api, AGENT_ID, first_beat_jitter_s=3600))
    # When the daemon has started / Then no beat went out on its own
    time.sleep(0.2)  # a window for a wrong immediate beat, not a speed assertion
    assert api.heartbeats == []
    # When the heartbeat is woken / Then it beats
    daemon.supervisor.wake("heartbeat")
    eventually(lambda: len(api.heartbeats) == 1, "the heartbeat")


def test_transient_errors_are_retried_after_a_backoff(run_daemon: Callable[..., Daemon]) -> None:
    # Given a service whose next two rounds fail as when the server is unreachable or busy
    service = Recorder(errors=[FleetlinkConnectionError("down"), api_error(503, "unavailable")])
    daemon = run_daemon(
        HeartbeatService(FakeAgentApi(), AGENT_ID, first_beat_jitter_s=3600),
        service,
        backoff=Backoff(base_s=0.01, max_s=0.02),
    )
    # When it runs / Then it is retried until a round succeeds, and the agent keeps running
    eventually(lambda: service.steps == 3, "the third round")
    assert not daemon.supervisor.stopping


def test_a_state_dir_that_takes_no_writes_makes_a_service_wait_never_stops_the_agent(
    run_daemon: Callable[..., Daemon], caplog: pytest.LogCaptureFixture
) -> None:
    # Given a service whose rounds fail to write to a full, then read-only state dir
    full = sqlite3.OperationalError("database or disk is full")
    full.sqlite_errorcode = sqlite3.SQLITE_FULL
    read_only = OSError(errno.EROFS, "Read-only file system")
    service = Recorder(errors=[full, read_only, StoreError("x")])
    service.errors[-1].__cause__ = OSError(errno.ENOSPC, "No space left on device")
    api = FakeAgentApi()
    daemon = run_daemon(
        HeartbeatService(api, AGENT_ID, first_beat_jitter_s=0), service, backoff=Backoff(0.01, 0.02)
    )

    # When it runs / Then it waits and retries until a round writes, the heartbeat going on
    def said() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == "fleetlink.agent.daemon"]

    eventually(lambda: len(said()) == 2, "a round that writes again")
    assert service.steps == 4
    assert not daemon.supervisor.stopping
    assert api.heartbeats
    # And the condition was said once when it started and once when it ended
    assert said() == [
        "recorder cannot write to the state dir (database or disk is full); it waits for space, "
        "heartbeats go on",
        "recorder writes to the state dir again",
    ]


def test_takes_no_writes_names_only_errors_of_a_full_or_read_only_disk() -> None:
    busy = sqlite3.OperationalError("database is locked")
    busy.sqlite_errorcode = sqlite3.SQLITE_BUSY
    assert takes_no_writes(busy) is None
    assert takes_no_writes(OSError(errno.ENOENT, "No such file")) is None
    assert takes_no_writes(ValueError("x")) is None
    assert takes_no_writes(OSError(errno.EDQUOT, "Disk quota exceeded")) == "Disk quota exceeded"


def test_an_error_retrying_cannot_fix_stops_every_service_and_is_raised(
    run_daemon: Callable[..., Daemon],
) -> None:
    # Given a server that refuses this agent's heartbeat (revoked)
    api = FakeAgentApi()
    api.heartbeat_errors.append(api_error(403, "agent-revoked"))
    service = Recorder()
    daemon = run_daemon(HeartbeatService(api, AGENT_ID, first_beat_jitter_s=0), service)
    # When the heartbeat is refused / Then every service is stopped urgently and run() raises the refusal
    daemon.thread.join(DEADLINE_S)
    assert not daemon.thread.is_alive()
    assert isinstance(daemon.error[0], FleetlinkApiError)
    assert daemon.error[0].status == 403
    assert service.log == ["start", "stop urgent=True"]


def test_a_graceful_stop_stops_services_in_reverse_order_heartbeat_last(
    run_daemon: Callable[..., Daemon],
) -> None:
    # Given a heartbeat and two services, all recording into one journal
    journal: list[str] = []

    class Heartbeat(HeartbeatService):
        def stop(self, *, urgent: bool = False) -> None:
            journal.append(f"heartbeat:stop urgent={urgent}")

    first, second = Recorder(name="first", journal=journal), Recorder(name="second", journal=journal)
    daemon = run_daemon(Heartbeat(FakeAgentApi(), AGENT_ID, first_beat_jitter_s=3600), first, second)
    eventually(lambda: first.steps and second.steps, "both running")
    # When it is stopped gracefully
    daemon.stop()
    # Then the services stop last-first, gracefully, and the heartbeat after them all
    assert journal == [
        "first:start",
        "second:start",
        "second:stop urgent=False",
        "first:stop urgent=False",
        "heartbeat:stop urgent=False",
    ]
    assert daemon.error == []


def test_service_names_must_be_unique() -> None:
    with pytest.raises(ValueError, match="unique"):
        Supervisor(HeartbeatService(FakeAgentApi(), AGENT_ID), [Recorder(), Recorder()])
