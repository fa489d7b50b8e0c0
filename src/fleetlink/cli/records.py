"""``fleetlink records``: this node's records (put, get, ls, rm, status, sync) and other nodes' (query).

Local commands work on ``agent.db`` in the state dir and never wait for the network; the sync
worker (``fleetlink agent run``, or ``records sync`` alone) carries writes to the relay. ``query``
asks the relay, signed as this agent. ``--json`` prints machine-readable output.
"""

from __future__ import annotations

import json
import shlex
import signal
import sqlite3
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer
from rich.console import Console

from fleetlink.agent.identity import IdentityError, resolve_state_dir
from fleetlink.agent.relay.service import RelayService
from fleetlink.agent.relay.store import LocalRecord, RecordStore, SyncHealth
from fleetlink.cli.operator import OperatorTokenOption, UrlOption
from fleetlink.cli.operator.command import operator_command
from fleetlink.cli.options import StateDirOption
from fleetlink.cli.records_operator import operator_query, policy
from fleetlink.cli.render import (
    Column,
    JsonOption,
    OutputFormat,
    OutputOption,
    ago,
    api_failure,
    escape,
    print_table,
    wants_json,
    when,
)
from fleetlink.cli.shared_options import OUTPUT_OPTIONS, Command, command_with, keyword
from fleetlink.client.http import FleetlinkApiError, FleetlinkClientError
from fleetlink.client.relay import RelayClient
from fleetlink.contract.relay import MAX_QUERY_LIMIT, QueryAnswer, QueryRecord, QueryRequest
from fleetlink.core.relay.records import InvalidRecord

records_app = typer.Typer(
    help="Records on this node, synced through the relay; query other nodes' records.", no_args_is_help=True
)

Collection = Annotated[str, typer.Argument(help="Collection: 1-64 of A-Z a-z 0-9 _ . -")]
Key = Annotated[str, typer.Argument(help="Key: 1-512 UTF-8 bytes, no control characters")]


def _shown(value: Any, deleted: bool) -> str:
    return "(deleted)" if deleted else _compact(value, 60)


def _console() -> Console:
    return Console(highlight=False)


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2) + "\n")


def _fail(message: str) -> typer.Exit:
    Console(stderr=True, highlight=False).print(f"[bold red]Error:[/bold red] [red]{escape(message)}[/red]")
    return typer.Exit(1)


@contextmanager
def _store(state_dir: Path | None) -> Iterator[RecordStore]:
    try:
        with RecordStore.in_state_dir(resolve_state_dir(state_dir)) as store:
            yield store
    except InvalidRecord as exc:
        raise _fail(str(exc)) from None
    except IdentityError as exc:
        raise _fail(str(exc)) from None
    except (sqlite3.OperationalError, OSError) as exc:  # a full or read-only state dir, most often
        where = resolve_state_dir(state_dir)
        raise _fail(
            f"cannot write to the state dir {where}: {exc}; free space there (or make it writable)"
        ) from None


def _record_json(record: LocalRecord) -> dict[str, Any]:
    data: dict[str, Any] = {
        "collection": record.collection,
        "key": record.key,
        "record_id": record.record_id,
        "hlc": record.hlc,
        "updated_at": record.updated_at,
        "synced": record.synced_at is not None,
    }
    if record.deleted:
        data["deleted"] = True
    else:
        data["value"] = record.value
    return data


def _compact(value: Any, width: int = 80) -> str:
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return text if len(text) <= width else text[: width - 1] + "…"


@dataclass(frozen=True)
class LocalCall:
    """The shared options of a records command on this node: its state dir, and how it prints."""

    state_dir: Path | None
    #: ``-o json`` or ``--json`` was given.
    json: bool

    @classmethod
    def of(cls, given: Mapping[str, Any]) -> LocalCall:
        return cls(given["state_dir"], wants_json(given["output"], given["as_json"]))

    def store(self) -> AbstractContextManager[RecordStore]:
        """This node's record store; failures printed naming the fix."""
        return _store(self.state_dir)


def _local_command(name: str) -> Callable[[Command], Command]:
    """A records command on this node: ``--state-dir``, ``-o`` and ``--json`` after its own options."""
    shared = (keyword("state_dir", StateDirOption, None), *OUTPUT_OPTIONS)
    return command_with(records_app, name, shared, LocalCall.of)


@_local_command("put")
def put(
    call: LocalCall,
    collection: Collection,
    key: Key,
    value: Annotated[str, typer.Argument(help="A JSON value ('-' reads it from stdin)")],
    string: Annotated[bool, typer.Option("--string", "-s", help="Store VALUE as a string, not JSON")] = False,
) -> None:
    """Write a value locally (queued for the relay)."""
    text = sys.stdin.read() if value == "-" else value
    if string:
        data: Any = text
    else:
        try:
            data = json.loads(text)
        except ValueError:
            raise _fail("VALUE is not JSON (use --string to store text)") from None
    with call.store() as store:
        record = store.set(collection, key, data)
    if call.json:
        _print_json(_record_json(record))
    else:
        _console().print(f"{escape(collection)}/{escape(key)} = {escape(_compact(data))}  (hlc {record.hlc})")


@_local_command("get")
def get(call: LocalCall, collection: Collection, key: Key) -> None:
    """Print a value (exit 1 if the key has none)."""
    with call.store() as store:
        record = store.get_record(collection, key)
    if record is None or record.deleted:
        raise _fail(f"{collection}/{key} has no value" + (" (deleted)" if record else ""))
    _print_json(_record_json(record) if call.json else record.value)


@_local_command("ls")
def list_records(
    call: LocalCall,
    collection: Annotated[str | None, typer.Argument(help="Collection (none: list collections)")] = None,
    prefix: Annotated[str | None, typer.Option("--prefix", help="Only keys starting with this")] = None,
    deleted: Annotated[bool, typer.Option("--deleted", help="Include deleted keys")] = False,
    limit: Annotated[int | None, typer.Option("--limit", min=1)] = None,
) -> None:
    """List collections, or the keys of one collection with their values and sync state."""
    with call.store() as store:
        if collection is None:
            counts = store.collections()
            if call.json:
                _print_json(counts)
                return
            print_table(
                [Column("COLLECTION"), Column("KEYS", justify="right")],
                [[escape(name), str(count)] for name, count in counts.items()],
            )
            return
        records = store.list(collection, prefix=prefix, include_deleted=deleted, limit=limit)
    if call.json:
        _print_json([_record_json(record) for record in records])
        return
    rows = [
        [escape(r.key), escape(_shown(r.value, r.deleted)), r.hlc, "synced" if r.synced_at else "pending"]
        for r in records
    ]
    print_table([Column("KEY"), Column("VALUE"), Column("HLC"), Column("SYNC")], rows)


@_local_command("rm")
def remove(call: LocalCall, collection: Collection, key: Key) -> None:
    """Delete a key (a tombstone, queued for the relay); exit 1 if it had no value."""
    with call.store() as store:
        removed = store.delete(collection, key)
    if call.json:
        _print_json({"collection": collection, "key": key, "deleted": removed})
    if not removed:
        raise _fail(f"{collection}/{key} has no value")
    if not call.json:
        _console().print(f"deleted {escape(collection)}/{escape(key)}")


@records_app.command()
def query(
    collection: Collection,
    node: Annotated[
        str | None, typer.Option("--node", metavar="AGENT_ID", help="Only this agent's records (agt_…)")
    ] = None,
    prefix: Annotated[
        str | None, typer.Option("--prefix", metavar="TEXT", help="Only keys starting with this")
    ] = None,
    since: Annotated[
        int | None, typer.Option("--since", min=0, metavar="EPOCH_MS", help="Updated after (epoch ms)")
    ] = None,
    deleted: Annotated[bool, typer.Option("--deleted", help="Include deleted keys")] = False,
    limit: Annotated[
        int, typer.Option("--limit", min=1, max=MAX_QUERY_LIMIT, metavar="N", help="Per page")
    ] = 50,
    cursor: Annotated[
        str | None, typer.Option("--cursor", metavar="CURSOR", help="Continue where a query stopped")
    ] = None,
    all_pages: Annotated[bool, typer.Option("--all", help="Follow cursors to the end")] = False,
    as_operator: Annotated[
        bool,
        typer.Option(
            "--operator",
            help="Ask as the operator (FLEETLINK_URL and FLEETLINK_OPERATOR_TOKEN, or IAM): every "
            "collection, no agent state dir needed",
        ),
    ] = False,
    url: UrlOption = None,
    operator_token: OperatorTokenOption = None,
    state_dir: StateDirOption = None,
    as_json: JsonOption = False,
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """Query records of any node through the relay: as this agent (as the collection's read policy
    allows), or with --operator as the operator."""
    request = QueryRequest(
        collection=collection,
        node_id=node,
        key_prefix=prefix,
        updated_since=since,
        include_deleted=deleted,
        limit=limit,
        cursor=cursor,
    )
    if as_operator:
        answer = operator_query(url, operator_token, request, all_pages)
    else:
        answer = _agent_query(state_dir, request, all_pages)
    found, next_cursor = answer.records, answer.cursor
    if as_json or output is OutputFormat.JSON:
        _print_json({"records": [r.model_dump(mode="json") for r in found], "cursor": next_cursor})
    else:
        rows = [[r.node_id, escape(r.key), escape(_shown(r.value, r.deleted)), r.hlc] for r in found]
        print_table([Column("NODE"), Column("KEY"), Column("VALUE"), Column("HLC")], rows)
    if next_cursor:
        words = ["fleetlink", "records", "query", collection, *(["--operator"] if as_operator else [])]
        words += ["--limit", str(limit), "--cursor", next_cursor]
        Console(stderr=True, highlight=False).print(
            f"[yellow]more: {escape(shlex.join(words))}[/yellow] [dim](or add --all)[/dim]"
        )


def _agent_query(state_dir: Path | None, request: QueryRequest, every: bool) -> QueryAnswer:
    found: list[QueryRecord] = []
    try:
        with RelayClient.from_state_dir(resolve_state_dir(state_dir)) as client:
            while True:
                answer = client.query(request)
                found.extend(answer.records)
                if not (every and answer.cursor):
                    return QueryAnswer(records=found, cursor=answer.cursor)
                request = request.model_copy(update={"cursor": answer.cursor})
    except FleetlinkApiError as exc:
        raise api_failure(exc) from None
    except (FleetlinkClientError, IdentityError, ValueError) as exc:
        raise _fail(str(exc)) from None


def last_error_text(health: SyncHealth) -> str:
    """The last sync error with when it happened; once a sync succeeded after it, that it recovered."""
    if not health.last_error:
        return "-"
    if health.last_error_at is not None and (health.last_success_at or 0) > health.last_error_at:
        return f"none since {when(health.last_success_at)} (recovered)"
    at = f" ({when(health.last_error_at)}, {ago(health.last_error_at)})" if health.last_error_at else ""
    return health.last_error + at


@_local_command("status")
def status(call: LocalCall) -> None:
    """How far this node is behind: queue, oldest pending record, last success and error, dead letters."""
    with call.store() as store:
        health = store.health()
        dead = store.dead_letters(limit=10)
    if call.json:
        _print_json({**health.as_dict(), "recent_dead_letters": [asdict(d) for d in dead]})
        return
    age = health.oldest_pending_age_s
    rows = {
        "queue": f"{health.queue_size} records, {health.bytes_pending} bytes",
        "oldest pending": "-" if age is None else f"{age:.1f} s",
        "last success": "never"
        if health.last_success_at is None
        else f"{when(health.last_success_at)} ({ago(health.last_success_at)})",
        "last error": last_error_text(health),
        "failures in a row": str(health.consecutive_failures),
        "dead letters": str(health.dead_letters),
    }
    print_table([Column(""), Column("")], [[n, escape(v)] for n, v in rows.items()], header=False)
    for letter in dead:
        _console().print(
            f"  rejected {escape(letter.collection)}/{escape(letter.key)}: {escape(letter.reason)}"
        )


@records_app.command()
def sync(
    once: Annotated[bool, typer.Option("--once", help="Drain the queue, then exit")] = False,
    state_dir: StateDirOption = None,
) -> None:
    """Run the sync worker on its own (fleetlink agent run runs it too) until Ctrl-C."""
    path = resolve_state_dir(state_dir)
    try:
        client = RelayClient.from_state_dir(path)
    except (FleetlinkClientError, IdentityError) as exc:
        raise _fail(str(exc)) from None
    with client, RecordStore.in_state_dir(path) as store:
        worker = RelayService(store, client)
        if once:
            worker.start()
            while store.has_pending() and worker.step() == 0.0:
                pass
            health = store.health()
            _console().print(f"queue {health.queue_size}, dead letters {health.dead_letters}")
            if health.queue_size:
                raise _fail(f"not drained: {health.last_error or 'the relay asked to wait'}")
            return

        def request_stop(signum: int, frame: FrameType | None) -> None:
            worker.stop()

        previous = signal.signal(signal.SIGTERM, request_stop)
        try:
            worker.run()
        except KeyboardInterrupt:
            pass
        finally:
            signal.signal(signal.SIGTERM, previous)


operator_command(records_app, "policy")(policy)
