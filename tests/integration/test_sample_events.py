"""events/: a real sample request for every route, and each one handled without a server error."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fleetlink.api.app import lambda_entry
from fleetlink.api.deps import Deps, build_deps, set_deps
from fleetlink.api.document import route_table
from fleetlink.api.settings import OperatorAuth, Settings
from fleetlink.core.clock import FixedClock
from fleetlink.local.events import LocalLambdaContext
from fleetlink.local.moto_backend import local_dynamodb

EVENTS = Path(__file__).parents[2] / "events"
SAMPLES = sorted((EVENTS / "http").glob("*.json"))
SAMPLED_AT_MS = 1_767_225_600_000


def _load(path: Path) -> dict[str, Any]:
    event: dict[str, Any] = json.loads(path.read_text())
    return event


@pytest.fixture
def deployed_deps() -> Iterator[Deps]:
    """Deps as in AWS: operators authorised by IAM, the clock at the samples' time."""
    with local_dynamodb("fleetlink-samples"):
        settings = Settings(
            table_name="fleetlink-samples", region="us-east-1", operator_auth=OperatorAuth.IAM
        )
        deps = build_deps(settings, clock=FixedClock(SAMPLED_AT_MS))
        set_deps(deps)
        yield deps
        set_deps(None)


def test_every_route_has_a_sample_and_every_sample_a_route() -> None:
    sampled = {(path.name.split(".")[0], _load(path)["routeKey"]) for path in SAMPLES}
    assert sampled == {(function, f"{method} {route}") for function, method, route in route_table()}


@pytest.mark.parametrize("sample", SAMPLES, ids=[p.name for p in SAMPLES])
def test_sample_is_answered_without_a_server_error(deployed_deps: Deps, sample: Path) -> None:
    # Given the request as API Gateway delivers it
    function = sample.name.split(".")[0]
    # When the function handles it
    response = lambda_entry(function)(_load(sample), LocalLambdaContext(function_name=function))
    # Then it is a success or a problem document, never a 5xx
    assert response["statusCode"] < 500, response["body"]
    if response["statusCode"] >= 400:
        assert response["headers"]["Content-Type"] == "application/problem+json"


def test_iam_caller_mints_tokens_in_the_deployed_mode(deployed_deps: Deps) -> None:
    event = _load(EVENTS / "http" / "registration.post.registration-tokens.json")
    response = lambda_entry("registration")(event, LocalLambdaContext(function_name="registration"))
    assert response["statusCode"] == 201


def test_operator_route_without_iam_context_is_refused_in_the_deployed_mode(deployed_deps: Deps) -> None:
    event = _load(EVENTS / "http" / "operator.get.agents.json")
    del event["requestContext"]["authorizer"]
    response = lambda_entry("operator")(event, LocalLambdaContext(function_name="operator"))
    assert response["statusCode"] == 401


def test_scheduled_cleanup_event_runs_the_cleanup_function(deployed_deps: Deps) -> None:
    spec = importlib.util.spec_from_file_location(
        "cleanup_handler", EVENTS.parent / "functions/cleanup/handler.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = module.lambda_handler(
        _load(EVENTS / "scheduled" / "cleanup.json"), LocalLambdaContext("cleanup")
    )
    assert "handled" in result


def test_in_the_deployed_mode_a_role_probe_that_iam_let_through_names_its_role(deployed_deps: Deps) -> None:
    # Given requests that reached the function, so IAM allowed them (the gateway refuses the others)
    def role_from(sample: str) -> Any:
        event = _load(EVENTS / "http" / sample)
        response = lambda_entry("operator")(event, LocalLambdaContext(function_name="operator"))
        assert response["statusCode"] == 200, response["body"]
        return json.loads(response["body"])["role"]

    # Then /v1/whoami cannot tell the role, and each role's probe names the role it needs
    assert role_from("operator.get.whoami.json") is None
    assert role_from("operator.get.whoami-operator.json") == "operator"
    assert role_from("operator.get.whoami-admin.json") == "admin"
