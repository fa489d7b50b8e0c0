"""The console's web app: pages, the fragments htmx polls, and the forms that write through the API.

Every request must come from this machine's browser session: the ``Host`` is the console's own
(no DNS rebinding), the session cookie is the key the console printed at start (``SameSite=Strict``,
HttpOnly), and a write's ``Origin`` is the console itself (no cross-site form). A control the
caller's role may not use is not rendered; the API would refuse it anyway (403).
"""

from __future__ import annotations

import hmac
import itertools
import threading
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.datastructures import FormData
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from fleetlink.client.http import FleetlinkApiError, FleetlinkClientError
from fleetlink.client.operator import OperatorClient
from fleetlink.console import fleet
from fleetlink.contract.relay import CollectionPolicy, QueryRequest, TagReaders
from fleetlink.core.roles import ROLE_ORDER, Role

HERE = Path(__file__).parent
#: The session cookie's name: ``<this>_<port>``, since cookies of one host are shared by its ports.
COOKIE = "fleetlink_console"
#: Seconds between the refreshes of a live region (htmx polling through this process).
REFRESH_S = 2
TASKS_SHOWN = 50
#: An agent's executions a page of its page shows (newest first; "older" follows the cursor).
AGENT_TASKS_SHOWN = 20


@dataclass
class ConsoleState:
    """Everything the pages share: the API client, the session key, the caller's permissions."""

    client: OperatorClient
    api_url: str
    session_key: str
    permissions: fleet.Permissions
    actor: str
    history: fleet.LivenessHistory
    allowed_hosts: frozenset[str]


def permissions_of(
    client: OperatorClient, role_override: Role | None = None
) -> tuple[str, fleet.Permissions]:
    """(actor, permissions) from ``/v1/whoami``. Where the API cannot tell the role (IAM decides at
    the gateway), ``role_override`` if given, else the role whose probe route IAM lets through."""
    me = client.whoami()
    routes = {route: Role(role) for route, role in me.routes.items()}
    role = me.role if me.role is not None else role_override
    if role is None:
        role = probed_role(client)
    return me.actor, fleet.Permissions(role=role, routes=routes)


def probed_role(client: OperatorClient) -> Role:
    """The highest role whose probe route (``GET /v1/whoami/<role>``) answers the caller."""
    for role in reversed(ROLE_ORDER[1:]):
        if client.holds_role(role):
            return role
    return Role.VIEWER


class SessionGuard(BaseHTTPMiddleware):
    """Host, session cookie and, on writes, Origin: only this machine's browser session gets in."""

    def __init__(self, app: Any, state: ConsoleState) -> None:
        super().__init__(app)
        self.state = state
        self.cookie = f"{COOKIE}_{next(iter(state.allowed_hosts)).rsplit(':', 1)[-1]}"

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        host = request.headers.get("host", "")
        if host not in self.state.allowed_hosts:
            return PlainTextResponse(f"unknown host {host!r}: open the console by the URL it printed", 403)
        if request.url.path.startswith("/static/"):
            return await call_next(request)
        key = request.query_params.get("key")
        if key is not None and hmac.compare_digest(key, self.state.session_key):
            response = RedirectResponse(request.url.path, status_code=303)
            response.set_cookie(self.cookie, key, httponly=True, samesite="strict", path="/")
            return response
        if not hmac.compare_digest(request.cookies.get(self.cookie, ""), self.state.session_key):
            return PlainTextResponse(
                "not signed in: open the URL `fleetlink console` printed (it carries the session key)", 401
            )
        if request.method not in ("GET", "HEAD"):
            origin = request.headers.get("origin") or request.headers.get("referer") or ""
            if urlsplit(origin).netloc not in self.state.allowed_hosts:
                return PlainTextResponse("a write must come from the console's own pages", 403)
        return await call_next(request)


def build_app(state: ConsoleState, *, sample: bool = True) -> Starlette:
    """The console app over ``state``; with ``sample``, a thread samples fleet liveness for the chart."""
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.globals.update(
        can=state.permissions.can,
        role=state.permissions.role,
        actor=state.actor,
        api_url=state.api_url,
        refresh_s=REFRESH_S,
        when=_when,
    )
    stop = threading.Event()

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        if sample:
            thread = threading.Thread(
                target=state.history.run,
                args=(lambda: fleet.overview(_agents(state.client)).by_liveness, stop),
                name="console-liveness",
                daemon=True,
            )
            thread.start()
        yield
        stop.set()

    def page(name: str, build: Callable[[Request], dict[str, Any]]) -> Callable[[Request], Response]:
        """A page (``name``.html) or, asked by htmx for its live region, the fragment alone."""

        def endpoint(request: Request) -> Response:
            context: dict[str, Any] = {"page": name, "error": None}
            try:
                context |= build(request)
            except FleetlinkApiError as error:
                context["error"] = _problem_text(error)
            except FleetlinkClientError as error:
                context["error"] = f"the API could not be reached: {error}"
            except ValueError as error:  # a query the page's own checks refuse before any call
                context["error"] = f"not a valid query: {error}"
            template = f"{name}_live.html" if request.headers.get("hx-request") else f"{name}.html"
            return templates.TemplateResponse(request, template, context)

        return endpoint

    def write(action: Callable[[FormData, Request], str]) -> Callable[[Request], Any]:
        """A form post: the action calls the API and names the page to go to; a refusal is shown."""

        async def endpoint(request: Request) -> Response:
            form = await request.form()
            try:
                target = action(form, request)
            except FleetlinkApiError as error:
                return _refused(templates, request, _problem_text(error))
            except (ValueError, FleetlinkClientError) as error:
                return _refused(templates, request, str(error))
            return RedirectResponse(target, status_code=303)

        return endpoint

    client = state.client

    # --- pages -------------------------------------------------------------------------------

    def overview_page(request: Request) -> dict[str, Any]:
        view = fleet.overview(_agents(client))
        state.history.record(view.by_liveness)
        return {"view": view, "chart": fleet.chart(state.history.snapshot())}

    def agent_page(request: Request) -> dict[str, Any]:
        agent_id = request.path_params["agent_id"]
        agent = client.get_agent(agent_id)
        cursor = request.query_params.get("cursor") or None
        executions = client.agent_executions(agent_id, limit=AGENT_TASKS_SHOWN, cursor=cursor)
        tunnels = client.list_tunnels(agent_id=agent_id).items
        try:
            sync: Any = client.node_sync(agent_id)
        except FleetlinkApiError as error:
            if error.status != 404:
                raise
            sync = None
        return {
            "agent": agent,
            "executions": executions.items,
            "older": executions.cursor,
            "paged": cursor is not None,
            "tunnels": tunnels,
            "sync": sync,
        }

    def tasks_page(request: Request) -> dict[str, Any]:
        state_filter = request.query_params.get("state") or None
        tasks = list(
            itertools.islice(client.iter_tasks(state=state_filter, page_size=TASKS_SHOWN), TASKS_SHOWN)
        )
        return {"tasks": tasks, "state_filter": state_filter or ""}

    def task_page(request: Request) -> dict[str, Any]:
        return {"task": client.get_task(request.path_params["task_id"])}

    def tunnels_page(request: Request) -> dict[str, Any]:
        tunnels = list(itertools.islice(client.iter_tunnels(page_size=100), 500))
        return {
            "tunnels": tunnels,
            "health": client.tunnels_health(),
            "events": client.fleet_events(limit=20).items,
        }

    def tunnel_page(request: Request) -> dict[str, Any]:
        tunnel_id = request.path_params["tunnel_id"]
        return {
            "tunnel": client.get_tunnel(tunnel_id),
            "events": client.tunnel_events(tunnel_id, limit=50).items,
        }

    def records_page(request: Request) -> dict[str, Any]:
        params = request.query_params
        collection = (params.get("collection") or "").strip()
        context: dict[str, Any] = {"query": dict(params), "records": None, "policy": None, "cursor": None}
        if collection:
            query = QueryRequest(
                collection=collection,
                node_id=params.get("node_id") or None,
                key_prefix=params.get("key_prefix") or None,
                include_deleted=params.get("include_deleted") == "on",
                limit=100,
                cursor=params.get("cursor") or None,
            )
            answer = client.query_records(query)
            context |= {
                "records": answer.records,
                "cursor": answer.cursor,
                "policy": client.collection_policy(collection),
            }
        return context

    def audit_page(request: Request) -> dict[str, Any]:
        params = request.query_params
        filters = {name: params.get(name) or None for name in ("actor", "resource", "action")}
        page = client.list_audit(
            actor=filters["actor"],
            resource=filters["resource"],
            action=filters["action"],
            limit=50,
            cursor=params.get("cursor") or None,
        )
        return {"entries": page.items, "cursor": page.cursor, "filters": filters}

    # --- writes ------------------------------------------------------------------------------

    def act_on(name: str, act: Callable[[str], object], then: str) -> Callable[[FormData, Request], str]:
        """A button's write: ``act`` on what the path names (its parameter ``name``), then the page
        ``then`` (``{}``: that id)."""

        def action(_: FormData, request: Request) -> str:
            named = request.path_params[name]
            act(named)
            return then.format(named)

        return action

    revoke_agent = act_on("agent_id", client.revoke, "/agents/{}")
    cancel_task = act_on("task_id", client.cancel_task, "/tasks/{}")
    delete_tunnel = act_on("tunnel_id", client.delete_tunnel, "/tunnels")

    def start_task(form: FormData, _: Request) -> str:
        agent_ids = fleet.parse_ids(str(form.get("agent_ids") or ""))
        tags = fleet.parse_pairs(str(form.get("tags") or ""))
        if not agent_ids and not tags:
            raise ValueError("name the targets: agent ids and/or tags key=value")
        created = client.create_task(
            command=str(form.get("command") or ""),
            agent_ids=agent_ids,
            tags=tags,
            priority=_int(form, "priority", 0),
            timeout_seconds=_int(form, "timeout_seconds", 300),
            max_concurrency=_int(form, "max_concurrency", None),
            max_errors=_int(form, "max_errors", None),
        )
        return f"/tasks/{created.task_id}"

    def switch_tunnel(form: FormData, request: Request) -> str:
        tunnel_id = request.path_params["tunnel_id"]
        client.patch_tunnel(tunnel_id, {"enabled": form.get("enabled") == "true"})
        return str(form.get("back") or "/tunnels")

    def create_tunnel(form: FormData, _: Request) -> str:
        spec = {
            name: str(form.get(name) or "").strip()
            for name in ("provider", "name", "mode", "local_target", "public_hostname")
        }
        body: dict[str, Any] = {k: v for k, v in spec.items() if v}
        body["enabled"] = True
        created = client.create_tunnel(str(form.get("agent_id") or "").strip(), body)
        return f"/tunnels/{created.tunnel_id}"

    def replace_tags(form: FormData, request: Request) -> str:
        agent_id = request.path_params["agent_id"]
        client.replace_tags(agent_id, fleet.parse_pairs(str(form.get("tags") or "")))
        return f"/agents/{agent_id}"

    def set_policy(form: FormData, _: Request) -> str:
        collection = str(form.get("collection") or "").strip()
        tags = fleet.parse_pairs(str(form.get("tags") or ""))
        readers: Any = TagReaders(tag=tags) if tags else "fleet"
        client.set_collection_policy(collection, CollectionPolicy(readers=readers))
        return f"/records?collection={collection}"

    routes = [
        Route("/", page("overview", overview_page)),
        Route("/agents/{agent_id}", page("agent", agent_page)),
        Route("/agents/{agent_id}/tags", write(replace_tags), methods=["POST"]),
        Route("/agents/{agent_id}/revoke", write(revoke_agent), methods=["POST"]),
        Route("/tasks", page("tasks", tasks_page)),
        Route("/tasks", write(start_task), methods=["POST"]),
        Route("/tasks/{task_id}", page("task", task_page)),
        Route("/tasks/{task_id}/cancel", write(cancel_task), methods=["POST"]),
        Route("/tunnels", page("tunnels", tunnels_page)),
        Route("/tunnels", write(create_tunnel), methods=["POST"]),
        Route("/tunnels/{tunnel_id}", page("tunnel", tunnel_page)),
        Route("/tunnels/{tunnel_id}/enabled", write(switch_tunnel), methods=["POST"]),
        Route("/tunnels/{tunnel_id}/delete", write(delete_tunnel), methods=["POST"]),
        Route("/records", page("records", records_page)),
        Route("/records/policy", write(set_policy), methods=["POST"]),
        Route("/audit", page("audit", audit_page)),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    return Starlette(routes=routes, middleware=[Middleware(SessionGuard, state=state)], lifespan=lifespan)


def _agents(client: OperatorClient) -> list[Any]:
    return list(itertools.islice(client.iter_agents(page_size=100), fleet.MAX_AGENTS))


def _int(form: FormData | Mapping[str, Any], name: str, default: int | None) -> Any:
    text = str(form.get(name) or "").strip()
    if not text:
        return default
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{name.replace('_', ' ')} must be a whole number") from None


def _problem_text(error: FleetlinkApiError) -> str:
    fields = "; ".join(
        f"{'.'.join(str(p) for p in e.get('loc', []) if p != 'body')}: {e.get('msg', '')}"
        for e in error.errors
    )
    return f"{error.status} {error.title}: {error.detail}" + (f" ({fields})" if fields else "")


def _refused(templates: Jinja2Templates, request: Request, message: str) -> Response:
    return templates.TemplateResponse(
        request, "refused.html", {"page": "", "error": message}, status_code=400
    )


def _when(at_ms: int | None) -> str:
    import datetime

    if at_ms is None:
        return "-"
    return datetime.datetime.fromtimestamp(at_ms / 1000, datetime.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
