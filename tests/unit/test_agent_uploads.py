"""Complete output on the agent: a stream that outgrew the inline copy is compressed and declared in
the result, uploaded after the report by presigned link, retried by the one back-off, and never
holds the report back. Real supervised subprocesses and a real SQLite store; an in-memory server."""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from fleetlink.agent.tasks.runner import TaskRunner
from fleetlink.agent.tasks.store import AgentStore
from fleetlink.agent.tasks.supervisor import RUNS_DIR
from fleetlink.agent.tasks.uploads import DONE_FILE, OutputUploader, declare_objects, declared, owed
from fleetlink.client.backoff import Backoff
from tests.fakes.agent_api import FakeAgentApi, api_error
from tests.unit.test_agent_runner import AGENT_ID, Agent, eventually

#: Quick retries: the test waits for them, it does not time them.
QUICK = Backoff(base_s=0.05, max_s=0.2)
BIG = "seq 1 30000"  # 168,894 bytes: far past the inline head and tail
BIG_BYTES = "".join(f"{i}\n" for i in range(1, 30001)).encode()


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[Agent]:
    store = AgentStore(tmp_path / "agent.db")
    api = FakeAgentApi()
    uploader = OutputUploader(api, put=api.put_object, backoff=QUICK)
    started = Agent(api, store, TaskRunner(api, store, None, AGENT_ID, uploader=uploader)).start()
    yield started
    started.stop()
    store.close()


def test_a_long_output_is_declared_in_the_result_then_uploaded_whole(agent: Agent) -> None:
    # Given a command printing 168 KB on stdout and a line on stderr / When it runs
    result = agent.run(f"{BIG}; echo small >&2")
    # Then its result declares the complete stdout (not the small stderr): size and SHA-256 of the gzip
    (declared_object,) = result["output_objects"]
    assert (declared_object["stream"], declared_object["bytes"]) == ("stdout", len(BIG_BYTES))
    assert (result["output_truncated"], result["stderr"]) == (True, "small\n")
    # And once reported the object is uploaded, and it is the exact output compressed
    key = (next(iter(agent.api.results)), 1, "stdout")
    eventually(lambda: key in agent.api.uploaded, "the upload")
    uploaded = agent.api.uploaded[key]
    assert hashlib.sha256(uploaded).hexdigest() == declared_object["sha256"]
    assert len(uploaded) == declared_object["size"]
    assert gzip.decompress(uploaded) == BIG_BYTES


def test_a_failing_upload_never_holds_back_the_report_and_is_retried(agent: Agent) -> None:
    # Given a bucket that fails the first two uploads
    agent.api.upload_errors = [OSError("disk hiccup"), httpx.ConnectError("no route")]
    # When a long output's command runs
    result = agent.run(BIG)
    # Then the result was reported at once (declaring the object)
    assert result["output_objects"]
    # And the upload got through on a later try
    eventually(lambda: len(agent.api.uploaded) == 1, "the retried upload")
    assert agent.api.upload_errors == []


def test_a_refused_upload_is_given_up_and_keeps_nothing_owed(agent: Agent, tmp_path: Path) -> None:
    # Given a server that refuses the links (say the attempt's window closed)
    refusals = [api_error(409, "upload-window-closed")]
    real = agent.api.request_output_uploads

    def refuse(execution_id: str, attempt: int) -> object:
        if refusals:
            raise refusals.pop(0)
        return real(execution_id, attempt)

    agent.api.request_output_uploads = refuse  # type: ignore[method-assign]
    # When a long output's command runs and is reported
    agent.run(BIG)
    run_dir = next((tmp_path / RUNS_DIR).iterdir())
    eventually(lambda: (run_dir / DONE_FILE).exists(), "the upload to be given up")
    # Then nothing is owed any more and nothing was uploaded
    assert not owed(run_dir)
    assert agent.api.uploaded == {}
    assert "refused: 409" in (run_dir / DONE_FILE).read_text()


def test_a_declaration_is_decided_once_and_small_streams_stay_inline(tmp_path: Path) -> None:
    # Given a run dir with a long stdout and a short stderr
    (tmp_path / "stdout").write_bytes(BIG_BYTES)
    (tmp_path / "stderr").write_bytes(b"short\n")
    # When it is declared twice (a restarted agent reports the same result)
    first = declare_objects(tmp_path)
    (tmp_path / "stdout").write_bytes(b"changed")
    second = declare_objects(tmp_path)
    # Then both say the same: only stdout, compressed the same way every time
    assert first == second == declared(tmp_path)
    assert [o.stream for o in first] == ["stdout"]
    assert gzip.decompress((tmp_path / "stdout.gz").read_bytes()) == BIG_BYTES
    assert owed(tmp_path)


def test_an_upload_owed_when_the_agent_stops_is_made_after_its_restart(tmp_path: Path) -> None:
    # Given an agent whose bucket is down: the long output's result is reported, its upload owed
    store = AgentStore(tmp_path / "agent.db")
    api = FakeAgentApi()
    api.upload_errors = [httpx.ConnectError("down")] * 1000
    down = OutputUploader(api, put=api.put_object, backoff=QUICK)
    first = Agent(api, store, TaskRunner(api, store, None, AGENT_ID, uploader=down)).start()
    first.run(BIG)
    eventually(lambda: len(api.upload_errors) < 1000, "a failed upload")
    first.stop()
    run_dir = next((tmp_path / RUNS_DIR).iterdir())
    assert owed(run_dir)
    # When the agent starts again (its start-up prunes run dirs) with the bucket back
    api.upload_errors = []
    up = OutputUploader(api, put=api.put_object, backoff=QUICK)
    second = Agent(api, store, TaskRunner(api, store, None, AGENT_ID, uploader=up)).start()
    try:
        # Then the run dir was kept and the object uploaded, whole
        eventually(lambda: not owed(run_dir), "the upload after the restart")
        assert gzip.decompress(next(iter(api.uploaded.values()))) == BIG_BYTES
    finally:
        second.stop()
        store.close()
