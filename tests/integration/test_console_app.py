"""The console app in-process against a dev stack: only its own session gets in, bad input is a page
that says why (never a 500), and what a role cannot do is not rendered."""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import pytest

with warnings.catch_warnings():  # starlette's test client prefers another httpx package; this one works
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from fleetlink.client.operator import OperatorClient
from fleetlink.console.app import COOKIE, ConsoleState, build_app, permissions_of, probed_role
from fleetlink.console.fleet import LivenessHistory
from fleetlink.core.roles import Role
from fleetlink.local.server import DevStack

HOST = "127.0.0.1:8090"
KEY = "k" * 32


@pytest.fixture(scope="module")
def stack() -> Iterator[DevStack]:
    with DevStack(
        port=0,
        cleanup_every_s=0,
        access_log=None,
        operator_token="admin-t",
        operators={"vera": Role.VIEWER, "otto": Role.OPERATOR},
    ) as dev:
        yield dev


def console(stack: DevStack, token: str) -> Iterator[TestClient]:
    client = OperatorClient(stack.url, token)
    actor, permissions = permissions_of(client)
    state = ConsoleState(
        client, stack.url, KEY, permissions, actor, LivenessHistory(every_s=60), frozenset({HOST})
    )
    with TestClient(build_app(state, sample=False), base_url=f"http://{HOST}") as test_client:
        test_client.cookies.set(f"{COOKIE}_8090", KEY)
        yield test_client
    client.close()


@pytest.fixture
def admin(stack: DevStack) -> Iterator[TestClient]:
    yield from console(stack, "admin-t")


@pytest.fixture
def viewer(stack: DevStack) -> Iterator[TestClient]:
    yield from console(stack, stack.operator_tokens["vera"].token)


def test_only_the_session_gets_in(admin: TestClient) -> None:
    # Given no cookie, a wrong one, another Host, or a write from another origin
    admin.cookies.clear()
    assert admin.get("/").status_code == 401
    admin.cookies.set(f"{COOKIE}_8090", "x" * 32)
    assert admin.get("/").status_code == 401
    # When the printed URL is opened, the key becomes the cookie and leaves the URL
    opened = admin.get(f"/?key={KEY}", follow_redirects=False)
    assert (opened.status_code, opened.headers["location"]) == (303, "/")
    assert "samesite=strict" in opened.headers["set-cookie"].lower()
    assert admin.get("/").status_code == 200
    assert admin.get("/", headers={"Host": "evil.example:8090"}).status_code == 403
    foreign = admin.post("/tasks", data={"command": "id"}, headers={"Origin": "http://evil.example"})
    assert foreign.status_code == 403


@pytest.mark.parametrize(
    ("path", "says"),
    [
        ("/records?collection=bad name!", "not a valid query"),
        ("/agents/agt_01KBZZZZZZZZZZZZZZZZZZZZZZ", "404"),
        ("/agents/not-an-id", "422"),
        ("/tasks/tsk_01KBZZZZZZZZZZZZZZZZZZZZZZ", "404"),
        ("/audit?cursor=forged", "invalid"),
        ("/tasks?state=sleeping", "422"),
    ],
)
def test_bad_input_is_a_page_that_says_why(admin: TestClient, path: str, says: str) -> None:
    page = admin.get(path)
    assert page.status_code == 200
    assert says in page.text.lower() or says in page.text


@pytest.mark.parametrize(
    "form",
    [
        {"command": "id"},  # no target
        {"command": "id", "tags": "novalue"},
        {"command": "id", "agent_ids": "agt_01KBZZZZZZZZZZZZZZZZZZZZZZ", "priority": "high"},
        {"command": "", "agent_ids": "agt_01KBZZZZZZZZZZZZZZZZZZZZZZ"},
    ],
)
def test_a_bad_task_form_is_refused_with_the_reason(admin: TestClient, form: dict[str, str]) -> None:
    refused = admin.post("/tasks", data=form, headers={"Origin": f"http://{HOST}"})
    assert refused.status_code == 400
    assert 'class="error"' in refused.text


def test_a_viewer_gets_no_write_control(viewer: TestClient, admin: TestClient) -> None:
    assert "start-task" in admin.get("/tasks").text
    assert "start-task" not in viewer.get("/tasks").text
    assert "create-tunnel" not in viewer.get("/tunnels").text
    assert 'method="post"' not in viewer.get("/records?collection=inventory").text


def test_the_role_is_probed_over_http_when_the_api_cannot_name_it(stack: DevStack) -> None:
    # Given each role's token (in AWS: each role's IAM policy; the probes are GETs each role's
    # policy holds and the lower ones do not, so the gateway's 403 is the answer there)
    tokens = {
        Role.VIEWER: stack.operator_tokens["vera"].token,
        Role.OPERATOR: stack.operator_tokens["otto"].token,
        Role.ADMIN: "admin-t",
    }
    for role, token in tokens.items():
        with OperatorClient(stack.url, token) as client:
            # When the console probes the role over real HTTP, Then it finds the token's
            assert probed_role(client) is role
