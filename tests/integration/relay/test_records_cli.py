"""``fleetlink records``: local put/get/ls/rm/status on a real agent.db, sync and query over real HTTP."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fleetlink.agent.identity import Identity, IdentityStore
from fleetlink.auth.keys import PrivateKey, private_key_to_pem
from fleetlink.cli.records import records_app
from fleetlink.core.entities import KeyAlg
from tests.fakes.relay_http import RelayHttpServer
from tests.integration.relay.conftest import NODE

runner = CliRunner()


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


def records(state_dir: Path, *args: str, input: str | None = None) -> tuple[int, str]:
    result = runner.invoke(records_app, [*args, "--state-dir", str(state_dir)], input=input)
    return result.exit_code, result.output


def test_put_then_get_prints_the_json_value(state_dir: Path) -> None:
    assert records(state_dir, "put", "config", "ui", '{"theme": "dark"}')[0] == 0
    code, output = records(state_dir, "get", "config", "ui")
    assert (code, json.loads(output)) == (0, {"theme": "dark"})


def test_put_string_and_stdin(state_dir: Path) -> None:
    records(state_dir, "put", "notes", "a", "plain text", "--string")
    records(state_dir, "put", "notes", "b", "-", input="[1, 2]")
    assert json.loads(records(state_dir, "get", "notes", "a")[1]) == "plain text"
    assert json.loads(records(state_dir, "get", "notes", "b")[1]) == [1, 2]


def test_bad_input_exits_1_with_the_rule_broken(state_dir: Path) -> None:
    code, output = records(state_dir, "put", "bad name", "k", "1")
    assert code == 1
    assert "invalid-collection" in output
    code, output = records(state_dir, "put", "c", "k", "{not json")
    assert code == 1
    assert "not JSON" in output


def test_ls_json_lists_keys_with_their_sync_state(state_dir: Path) -> None:
    records(state_dir, "put", "c", "b", "2")
    records(state_dir, "put", "c", "a", "1")
    code, output = records(state_dir, "ls", "c", "--json")
    listed = json.loads(output)
    assert code == 0
    assert [(r["key"], r["value"], r["synced"]) for r in listed] == [("a", 1, False), ("b", 2, False)]
    assert json.loads(records(state_dir, "ls", "--json")[1]) == {"c": 2}


def test_rm_deletes_and_a_second_rm_exits_1(state_dir: Path) -> None:
    records(state_dir, "put", "c", "a", "1")
    assert records(state_dir, "rm", "c", "a")[0] == 0
    assert records(state_dir, "get", "c", "a")[0] == 1
    assert records(state_dir, "rm", "c", "a")[0] == 1


def test_status_json_shows_the_queue(state_dir: Path) -> None:
    records(state_dir, "put", "c", "a", "1")
    status = json.loads(records(state_dir, "status", "--json")[1])
    assert status["queue_size"] == 1
    assert status["dead_letters"] == 0


def test_sync_once_then_query_through_the_relay(
    state_dir: Path, relay_server: RelayHttpServer, node_key: PrivateKey
) -> None:
    # Given a registered node with two local records
    identities = IdentityStore(state_dir)
    identities.ensure_dir()
    identities.key_path.write_text(private_key_to_pem(node_key))
    identities.save_identity(Identity(NODE, relay_server.url, KeyAlg.ED25519, "fp", 0))
    records(state_dir, "put", "inv", "host/1", '{"cpu": 4}')
    records(state_dir, "put", "inv", "host/2", '{"cpu": 8}')
    # When it syncs once and queries the collection
    assert records(state_dir, "sync", "--once")[0] == 0
    code, output = records(state_dir, "query", "inv", "--node", NODE, "--limit", "1", "--all", "--json")
    # Then the relay answers both records, page by page
    assert code == 0
    assert [(r["key"], r["value"]) for r in json.loads(output)["records"]] == [
        ("host/1", {"cpu": 4}),
        ("host/2", {"cpu": 8}),
    ]
    assert json.loads(records(state_dir, "ls", "inv", "--json")[1])[0]["synced"] is True


def test_query_of_an_unregistered_node_exits_1(state_dir: Path) -> None:
    code, output = records(state_dir, "query", "inv")
    assert code == 1
    assert "not registered" in output
