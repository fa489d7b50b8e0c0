"""Live output from the agent: real subprocesses, the streamer, an in-memory server."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fleetlink.agent.tasks.output import FileTail, OutputStreamer, StreamProgress
from fleetlink.agent.tasks.runner import TaskRunner
from fleetlink.agent.tasks.store import AgentStore
from fleetlink.client.http import FleetlinkApiError
from tests.fakes.agent_api import FakeAgentApi, api_error
from tests.unit.test_agent_runner import AGENT_ID, Agent


@pytest.fixture
def streaming(tmp_path: Path) -> Iterator[Agent]:
    """A runner on a real store and real processes, talking to a fake server."""
    store = AgentStore(tmp_path / "agent.db")
    api = FakeAgentApi()
    agent = Agent(api, store, TaskRunner(api, store, None, AGENT_ID)).start()
    yield agent
    agent.stop()
    store.close()


def lines(chunks: list[tuple[int, int, list[dict[str, str]]]], stream: str) -> str:
    return "".join(part["data"] for _, _, parts in chunks for part in parts if part["stream"] == stream)


def test_output_arrives_while_the_command_runs_streams_apart(streaming: Agent) -> None:
    # Given a command that prints to both streams for a few seconds
    command = "for i in 1 2 3; do echo out$i; echo err$i >&2; sleep 1; done"
    # When it runs
    result = streaming.run(command)
    chunks = next(iter(streaming.api.chunks.values()))
    # Then its output came in numbered chunks, stdout and stderr kept apart, all of it
    assert [seq for _, seq, _ in chunks] == list(range(1, len(chunks) + 1))
    assert lines(chunks, "stdout") == "out1\nout2\nout3\n"
    assert lines(chunks, "stderr") == "err1\nerr2\nerr3\n"
    assert (result["output"], result["stderr"]) == ("out1\nout2\nout3\n", "err1\nerr2\nerr3\n")
    # and batched: at most one chunk a second (3 s of output, plus the last one after the end)
    assert len(chunks) <= 5


def test_a_command_that_ends_within_a_second_sends_no_chunk(streaming: Agent) -> None:
    # Given a short command whose output fits its result / When it runs
    result = streaming.run("echo quick; echo fast >&2")
    # Then its result carries the output, and no chunk was written for it
    assert (result["output"], result["stderr"]) == ("quick\n", "fast\n")
    assert streaming.api.chunks == {}


def test_a_quiet_command_sends_no_chunk(streaming: Agent) -> None:
    # Given a command that prints nothing for two seconds / When it runs
    streaming.run("sleep 2")
    # Then no chunk was sent
    assert streaming.api.chunks == {}


class FlakyApi:
    """Fails the first append transiently, then refuses everything after the second chunk."""

    def __init__(self, errors: list[FleetlinkApiError | None]) -> None:
        self.errors = errors
        self.sent: list[tuple[int, list[dict[str, str]]]] = []

    def append_output(self, execution_id: str, *, attempt: int, seq: int, parts: list[dict[str, str]]) -> Any:
        self.sent.append((seq, parts))
        error = self.errors.pop(0) if self.errors else None
        if error is not None:
            raise error
        return None


class Source:
    def __init__(self) -> None:
        self.data = b""
        self.lock = threading.Lock()

    def write(self, data: bytes) -> None:
        with self.lock:
            self.data += data

    def take_new(self) -> tuple[bytes, int]:
        with self.lock:
            data, self.data = self.data, b""
        return data, 0


def test_a_chunk_that_failed_is_resent_unchanged_and_new_output_waits_for_the_next() -> None:
    # Given a streamer whose first send fails with a 503
    api = FlakyApi([api_error(503, "unavailable"), None, None])
    out = Source()
    streamer = OutputStreamer(api, "exe_1", 1, {"stdout": out, "stderr": Source()})
    out.write(b"a\n")
    assert streamer.send_once() is False
    # When more output comes and it sends again
    out.write(b"b\n")
    assert streamer.send_once() is True
    assert streamer.send_once() is True
    # Then chunk 1 went twice with the same content, and the new output went as chunk 2
    assert api.sent == [
        (1, [{"stream": "stdout", "data": "a\n"}]),
        (1, [{"stream": "stdout", "data": "a\n"}]),
        (2, [{"stream": "stdout", "data": "b\n"}]),
    ]


def test_a_refused_chunk_ends_the_stream_quietly() -> None:
    api = FlakyApi([api_error(409, "attempt-not-running")])
    out = Source()
    streamer = OutputStreamer(api, "exe_1", 1, {"stdout": out})
    out.write(b"late\n")
    assert streamer.send_once() is True
    out.write(b"more\n")
    streamer.send_once()
    assert len(api.sent) == 1


def test_a_chunk_holds_at_most_its_size_and_the_rest_follows() -> None:
    api = FlakyApi([])
    out = Source()
    streamer = OutputStreamer(api, "exe_1", 1, {"stdout": out}, max_chunk_bytes=10)
    out.write("ééééééé".encode())  # 2 bytes each
    streamer.send_once()
    streamer.send_once()
    sent = [parts[0]["data"] for _, parts in api.sent]
    assert sent == ["ééééé", "éé"]


def test_a_restarted_streamer_goes_on_after_the_last_acknowledged_chunk(tmp_path: Path) -> None:
    # Given a supervised command's stdout file streamed in two acknowledged chunks
    api = FakeAgentApi()
    stdout = tmp_path / "stdout"
    stdout.write_bytes("one ✓\n".encode())
    first = OutputStreamer(api, "exe_1", 1, {"stdout": FileTail(stdout)}, progress=StreamProgress(tmp_path))
    assert first.send_once()
    with stdout.open("ab") as handle:
        handle.write(b"two\n")
    assert first.send_once()
    # When the daemon dies (the streamer with it), the command prints on, and a new daemon resumes
    with stdout.open("ab") as handle:
        handle.write(b"three\n")
    progress = StreamProgress(tmp_path)
    second = OutputStreamer(
        api, "exe_1", 1, {"stdout": FileTail(stdout, progress.offset("stdout"))}, progress=progress
    )
    assert second.send_once()
    # Then it sends chunk 3 with only what is new: every byte once, numbered without a gap
    chunks = api.chunks["exe_1"]
    assert [seq for _, seq, _ in chunks] == [1, 2, 3]
    assert lines(chunks, "stdout") == "one ✓\ntwo\nthree\n"
