"""The embedded dev stack: an HTTP server that plays API Gateway in front of the real Lambda handlers.

Each request becomes an API Gateway HTTP API (payload 2.0) event for the function that owns its
route (``route_table()``), the function's handler (``fleetlink.api.entry``, by import) runs on moto DynamoDB,
and its response goes back over HTTP. A timer plays EventBridge (the scheduled functions'
duties) and DynamoDB's TTL process (``fleetlink.local.ttl``), which moto does not emulate. Routing:
``fleetlink.local.routing``. With a data folder (``fleetlink.local.persist``), the table and the
operator token outlive the process: restored at start, saved periodically and at stop, and every
change journaled before its answer (``fleetlink.local.journal``), so a SIGKILL loses nothing answered.
The HTTP/1.1 layer in front of it: ``fleetlink.local.http``.
"""

from __future__ import annotations

import os
import secrets
import sys
import threading
import traceback
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from fleetlink.core.roles import Role
from fleetlink.local.events import LocalLambdaContext, http_api_event, scheduled_event
from fleetlink.local.faults import FaultInjector, FaultPlan
from fleetlink.local.http import HttpResponse, RequestHandler, Server, lambda_response, problem_response
from fleetlink.local.journal import JOURNAL_FILE, WriteJournal
from fleetlink.local.journal import install as install_journal
from fleetlink.local.moto_backend import request_lock as moto_request_lock
from fleetlink.local.operators import NamedToken, resolve_tokens, tokens_env
from fleetlink.local.persist import DevData, put_items, table_items
from fleetlink.local.routing import RouteTable
from fleetlink.local.ttl import expire_ttl_items

if TYPE_CHECKING:
    from fleetlink.local.buckets import LocalBuckets

#: The project folder of a source checkout (src/fleetlink/local → repo): the data folder's default.
PROJECT_DIR = Path(__file__).resolve().parents[3]


#: Seconds between saves of the table to the data folder (only when it changed); each save empties
#: the journal, which holds every change in between.
SAVE_EVERY_S = 60.0

#: One invocation at a time in the whole process, as in one Lambda container: Powertools'
#: resolvers keep the current event in class-level state.
INVOKE_LOCK = threading.Lock()

LambdaHandler = Callable[[dict[str, Any], Any], Any]
AccessLog = Callable[[str], None]


def _stderr_line(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


# --- the stack -----------------------------------------------------------------------------------


class DevStack:
    """moto DynamoDB, the Lambda handlers behind an HTTP server, and the schedules, in this process."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        table_name: str = "fleetlink",
        operator_token: str | None = None,
        cleanup_every_s: float = 60.0,
        heartbeat_interval_s: int | None = None,
        access_log: AccessLog | None = _stderr_line,
        data_dir: Path | None = None,
        save_every_s: float = SAVE_EVERY_S,
        dynamodb_endpoint: str | None = None,
        faults: FaultPlan | None = None,
        operators: Mapping[str, Role] | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.table_name = table_name
        #: Where the table and the operator token are kept across restarts; None: memory only (or an
        #: external ``dynamodb_endpoint``, which keeps its own data).
        self.data = DevData(data_dir) if data_dir is not None and dynamodb_endpoint is None else None
        self.save_every_s = save_every_s
        #: How many items the start restored from the data folder (saved table; journal replayed).
        self.restored_items = 0
        self.replayed_items = 0
        self._journal: WriteJournal | None = None
        #: The S3 buckets on loopback, once started (after the table: the journal's first save
        #: comes before them, and has no bucket to save yet).
        self.buckets: LocalBuckets | None = None
        self._given_token = operator_token
        self.operator_token = operator_token or secrets.token_urlsafe(24)
        #: Named operator tokens with roles asked for (``--operator NAME:ROLE``); once started, every
        #: named token (those kept in the data folder too) is in ``operator_tokens``.
        self._operators = dict(operators or {})
        self.operator_tokens: dict[str, NamedToken] = {}
        #: None: the handlers' own default (FLEETLINK_HEARTBEAT_INTERVAL_S, else 60 s).
        self.heartbeat_interval_s = heartbeat_interval_s
        self.cleanup_every_s = cleanup_every_s
        self.access_log = access_log
        #: None: moto in this process; else any DynamoDB-compatible endpoint (e.g. DynamoDB Local).
        self.dynamodb_endpoint = dynamodb_endpoint
        self.faults = faults
        #: Injecting ``faults`` into the handlers' client once started (``injector.counts``).
        self.injector: FaultInjector | None = None
        self._endpoint_client: Any = None
        self.routes = RouteTable([])
        self._handlers: dict[str, LambdaHandler] = {}
        self._resources = ExitStack()
        self._saved_env: dict[str, str | None] = {}
        self._server: Server | None = None
        self._stop_scheduler = threading.Event()
        self._threads: list[threading.Thread] = []
        self._stopped = threading.Event()
        self._serving = False

    # lifecycle

    def start(self) -> DevStack:
        """Start moto, load the handlers, listen, and start the schedule; the URL is then known."""
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        if self.data is not None:  # first: a folder another stack holds is refused before anything starts
            self.data.lock()
            self._resources.callback(self.data.release)
        if self.dynamodb_endpoint is None:
            from fleetlink.local.moto_backend import local_dynamodb

            client = self._resources.enter_context(local_dynamodb(self.table_name))
            if self.data is not None:
                items = self.data.load_items()
                put_items(client, self.table_name, items)
                self.restored_items = len(items)
                if self._given_token is None:
                    self.operator_token = self.data.operator_token()
                self._open_journal(client)
        else:
            self._endpoint_client = _endpoint_table(self.dynamodb_endpoint, self.table_name)
        self.operator_tokens = resolve_tokens(self._operators, self.data.path if self.data else None)
        self._set_env(
            TABLE_NAME=self.table_name,
            FLEETLINK_OPERATOR_AUTH="token",
            FLEETLINK_OPERATOR_TOKEN=self.operator_token,
            FLEETLINK_OPERATOR_TOKENS=tokens_env(self.operator_tokens),
            # moto intercepts AWS endpoints only; another endpoint is named to the handlers
            FLEETLINK_DYNAMODB_ENDPOINT=self.dynamodb_endpoint,
        )
        if self.heartbeat_interval_s is not None:
            self._set_env(FLEETLINK_HEARTBEAT_INTERVAL_S=str(self.heartbeat_interval_s))
        from fleetlink.api.functions import buckets
        from fleetlink.local.buckets import LocalBuckets

        local_buckets = LocalBuckets(buckets().values(), self.data.path if self.data else None)
        self.buckets = local_buckets
        self._resources.callback(local_buckets.stop)
        self._set_env(**local_buckets.start())
        from fleetlink.api.deps import build_deps, set_deps
        from fleetlink.api.document import route_table
        from fleetlink.api.entry import function_entry
        from fleetlink.api.functions import FUNCTIONS
        from fleetlink.api.settings import Settings

        set_deps(build_deps(Settings.from_env()))  # binds the table: the handlers' one client exists
        if self.faults is not None:
            self.injector = FaultInjector(self.faults)
            self.injector.attach_pynamodb()
        self.routes = RouteTable(route_table())
        for function in FUNCTIONS:
            self._handlers[function] = function_entry(function)

        self._server = Server((self.host, self.port), RequestHandler, stack=self)
        self._spawn("fleetlink-http", self._serve)
        self._serving = True
        if self.cleanup_every_s > 0:
            self._spawn("fleetlink-schedule", self._schedule)
        if self.data is not None and self.save_every_s > 0:
            self._spawn("fleetlink-save", self._save_periodically)

    def _open_journal(self, client: Any) -> None:
        """Replay what the journal holds beyond the saved table, save it all, and journal from now on."""
        assert self.data is not None
        journal = WriteJournal(self.data.path / JOURNAL_FILE, self.table_name)
        self.replayed_items = journal.replay(client)
        journal.open()
        install_journal(journal)
        self._resources.callback(journal.close)
        self._resources.callback(install_journal, None)
        self._journal = journal
        self.save()

    def _serve(self) -> None:
        assert self._server is not None
        self._server.serve_forever(poll_interval=0.2)

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _set_env(self, **values: str | None) -> None:
        for name, value in values.items():
            self._saved_env.setdefault(name, os.environ.get(name))
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value

    def stop(self) -> None:
        """Stop listening, stop the schedule, let a running invocation finish, then stop moto."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        self._stop_scheduler.set()
        if self._server is not None:
            if self._serving:
                self._server.shutdown()
            self._server.server_close()
        for thread in self._threads:
            thread.join(timeout=10)
        with INVOKE_LOCK:
            if self.injector is not None:
                self.injector.detach()
            if self._serving:
                self.save()
            self._resources.close()
            for name, value in self._saved_env.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
            from fleetlink.api.deps import set_deps

            set_deps(None)

    def __enter__(self) -> DevStack:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The base URL clients use (``http://HOST:PORT``), known once started."""
        if self._server is None:
            raise RuntimeError("the dev stack is not started")
        host, port = str(self._server.server_address[0]), int(self._server.server_address[1])
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{port}"

    # invocations

    def invoke(self, function: str, event: dict[str, Any]) -> Any:
        """Run one function's handler on ``event``, one invocation at a time (one container)."""
        context = LocalLambdaContext(function_name=f"fleetlink-{function}")
        with INVOKE_LOCK:
            if self._stopped.is_set():
                raise StackStoppedError
            return self._handlers[function](event, context)

    def run_scheduled(self, function: str, duty: str | None = None) -> Any:
        """Invoke a scheduled function as its EventBridge schedule would (every duty when None)."""
        return self.invoke(function, scheduled_event(duty))

    def expire_ttl_items(self, now_s: int | None = None) -> int:
        """Delete expired items from moto, as DynamoDB's TTL process would (see :func:`expire_ttl_items`).

        An external endpoint keeps its own TTL process, or none (DynamoDB Local): expired items then
        stay, and every read already filters them (``ttl > now``), so nothing pages through the table.
        """
        if self._endpoint_client is not None:
            return 0
        return expire_ttl_items(self.table_name, now_s=now_s)

    def tick(self) -> None:
        """One scheduled round: every scheduled function, then TTL expiry; failures are logged, not raised."""
        from fleetlink.api.functions import scheduled_functions

        for spec in scheduled_functions():
            try:
                result = self.run_scheduled(spec.name)
                handled = result.get("handled", {}) if isinstance(result, dict) else {}
                if any(handled.values()):
                    self.log(f"fleetlink dev: {spec.name} handled {handled}")
            except StackStoppedError:
                return
            except Exception as exc:
                self.log(f"fleetlink dev: {spec.name} failed: {type(exc).__name__}: {exc}")
        try:
            deleted = self.expire_ttl_items()
            if deleted:
                self.log(f"fleetlink dev: TTL expired {deleted} item(s)")
        except Exception as exc:
            self.log(f"fleetlink dev: TTL expiry failed: {type(exc).__name__}: {exc}")

    def _schedule(self) -> None:
        while not self._stop_scheduler.wait(self.cleanup_every_s):
            self.tick()

    def save(self) -> bool:
        """Write the table to the data folder if it changed; whether it wrote (never raises)."""
        if self.data is None:
            return False
        try:
            if self.buckets is not None:
                self.buckets.save()
            with moto_request_lock:  # the snapshot and the journal's reset see the same writes
                saved = self.data.save_items(table_items(self.table_name))
                if self._journal is not None:
                    self._journal.reset()
            return saved
        except Exception as exc:
            self.log(f"fleetlink dev: cannot save to {self.data.path}: {type(exc).__name__}: {exc}")
            return False

    def _save_periodically(self) -> None:
        while not self._stop_scheduler.wait(self.save_every_s):
            self.save()

    def log(self, line: str) -> None:
        if self.access_log is not None:
            self.access_log(line)

    # HTTP

    def handle(self, method: str, target: str, headers: list[tuple[str, str]], body: bytes) -> HttpResponse:
        """Answer one HTTP request as API Gateway + Lambda would; never raises."""
        split = urlsplit(target)
        raw_path, raw_query = split.path or "/", split.query
        try:
            matched = self.routes.match(method, raw_path)
            if matched is None:
                allowed = self.routes.allowed_methods(raw_path)
                if allowed:
                    return problem_response(
                        405,
                        "method-not-allowed",
                        f"{method} is not allowed on this path",
                        instance=raw_path,
                        headers={"Allow": ", ".join(allowed)},
                    )
                return problem_response(404, "no-such-route", "no such route", instance=raw_path)
            host = next((value for name, value in headers if name.lower() == "host"), None)
            event = http_api_event(
                method,
                raw_path,
                domain_name=host or self.url.removeprefix("http://"),
                raw_query=raw_query,
                headers=headers,
                body=body,
                route_key=matched.route.route_key,
                path_parameters=matched.path_parameters,
            )
            journaled = self._journal.written if self._journal is not None else 0
            response = lambda_response(self.invoke(matched.route.function, event))
            if self._journal is not None:
                self._journal.sync(since=journaled)  # answered only once what it changed is durable
            return response
        except StackStoppedError:
            return problem_response(503, "stopping", "the dev stack is stopping", instance=raw_path)
        except Exception:
            self.log(f"fleetlink dev: {method} {raw_path} failed:\n{traceback.format_exc().rstrip()}")
            return problem_response(500, "internal", "an internal error occurred", instance=raw_path)


def _endpoint_table(endpoint: str, table_name: str) -> Any:
    """A client of a DynamoDB-compatible endpoint, with the table there (created unless it exists)."""
    import boto3

    from fleetlink.local.moto_backend import FAKE_AWS_ENV
    from fleetlink.store.table import ensure_table

    for name, value in FAKE_AWS_ENV.items():
        os.environ.setdefault(name, value)
    client = boto3.client("dynamodb", endpoint_url=endpoint, region_name=os.environ["AWS_DEFAULT_REGION"])
    ensure_table(client, table_name)  # without the TTL API, the schedule deletes expired items itself
    return client


class StackStoppedError(Exception):
    """The stack stopped before this invocation could run."""
