"""The HTTP API: every route of the OpenAPI document wired (and nothing else), IAM on operator routes."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_cdk.assertions import Match
from infra.constructs.http_api import (
    ACCESS_LOG_FORMAT,
    COMPACT_ACCESS_LOG_FORMAT,
    Authorization,
    Route,
    authorization_of,
    routes,
)

from fleetlink.api.document import openapi_document, route_table
from tests.infra.conftest import Synthesized
from tests.infra.helpers import only_resource, resources_of_type

pytestmark = [pytest.mark.infra, pytest.mark.xdist_group("cdk")]


def wired_routes(app: Synthesized) -> dict[str, dict[str, Any]]:
    """{route key: route properties} of the synthesized API."""
    return {
        route["Properties"]["RouteKey"]: route["Properties"]
        for route in resources_of_type(app.api_json, "AWS::ApiGatewayV2::Route").values()
    }


def integration_targets(app: Synthesized) -> dict[str, str]:
    """{integration logical id: function name} through the integrations' URIs."""
    functions = {app.logical_id(fn): name for name, fn in app.stacks.api.functions.items()}
    found = {}
    for logical_id, integration in resources_of_type(app.api_json, "AWS::ApiGatewayV2::Integration").items():
        uri = integration["Properties"]["IntegrationUri"]
        found[logical_id] = functions[uri["Fn::GetAtt"][0]]
    return found


def openapi_route_keys() -> set[str]:
    return {
        f"{method.upper()} {path}"
        for path, operations in openapi_document()["paths"].items()
        for method in operations
    }


def test_every_openapi_route_is_wired_and_nothing_else(default_app: Synthesized) -> None:
    # Given the OpenAPI document the handlers serve
    documented = openapi_route_keys()
    # When the synthesized API's routes are listed
    wired = set(wired_routes(default_app))
    # Then they are the same set: nothing undocumented is exposed, nothing documented is missing
    assert wired == documented


def test_every_route_reaches_the_function_that_serves_it(default_app: Synthesized) -> None:
    # Given the route table (function, method, path) from the handlers' own resolvers
    expected = {f"{method} {path}": function for function, method, path in route_table()}
    targets = integration_targets(default_app)
    # When each route's integration is followed to its function
    reached = {
        key: targets[route["Target"]["Fn::Join"][1][1]["Ref"]]
        for key, route in wired_routes(default_app).items()
    }
    # Then it is the function the route table names
    assert reached == expected


def test_operator_routes_need_iam_and_no_other_route_has_an_authorizer(default_app: Synthesized) -> None:
    paths = openapi_document()["paths"]
    for key, route in wired_routes(default_app).items():
        method, path = key.split(" ", 1)
        security = paths[path][method.lower()].get("security") or []
        if {"operator"} in [set(requirement) for requirement in security]:
            assert route["AuthorizationType"] == "AWS_IAM", key
        else:
            assert route.get("AuthorizationType", "NONE") == "NONE", key
            assert "AuthorizerId" not in route, key


def test_at_least_one_operator_and_one_agent_route_exist(default_app: Synthesized) -> None:
    kinds = {route.get("AuthorizationType", "NONE") for route in wired_routes(default_app).values()}
    assert kinds == {"AWS_IAM", "NONE"}


def test_integrations_are_lambda_proxies_with_payload_2(default_app: Synthesized) -> None:
    integrations = resources_of_type(default_app.api_json, "AWS::ApiGatewayV2::Integration").values()
    assert integrations
    for integration in integrations:
        assert integration["Properties"]["IntegrationType"] == "AWS_PROXY"
        assert integration["Properties"]["PayloadFormatVersion"] == "2.0"


def test_default_stage_auto_deploys_with_throttling_and_access_logs(default_app: Synthesized) -> None:
    default_app.api.has_resource_properties(
        "AWS::ApiGatewayV2::Stage",
        Match.object_like(
            {"StageName": "$default", "AutoDeploy": True, "AccessLogSettings": Match.any_value()}
        ),
    )
    _, stage = only_resource(default_app.api_json, "AWS::ApiGatewayV2::Stage")
    properties = stage["Properties"]
    assert (properties["StageName"], properties["AutoDeploy"]) == ("$default", True)
    assert properties["DefaultRouteSettings"] == {"ThrottlingBurstLimit": 5000, "ThrottlingRateLimit": 3000}
    log_group = default_app.logical_id(default_app.stacks.api.http_api.access_logs)
    assert properties["AccessLogSettings"]["DestinationArn"] == {"Fn::GetAtt": [log_group, "Arn"]}
    assert json.loads(properties["AccessLogSettings"]["Format"]) == COMPACT_ACCESS_LOG_FORMAT


def test_the_full_access_log_format_from_context(custom_app: Synthesized) -> None:
    _, stage = only_resource(custom_app.api_json, "AWS::ApiGatewayV2::Stage")
    assert json.loads(stage["Properties"]["AccessLogSettings"]["Format"]) == ACCESS_LOG_FORMAT


@pytest.mark.parametrize("fields", [COMPACT_ACCESS_LOG_FORMAT, ACCESS_LOG_FORMAT])
def test_access_log_formats_have_the_request_id_and_no_headers(fields: dict[str, str]) -> None:
    assert "$context.requestId" in fields.values()
    assert not [v for v in fields.values() if "header" in v.lower() or "querystring" in v.lower()]


def test_the_compact_access_log_keeps_what_an_incident_needs() -> None:
    # who (source IP), what (method, path with the agent id), when, outcome (status, latency, error)
    assert {
        "$context.requestId",
        "$context.requestTimeEpoch",
        "$context.identity.sourceIp",
        "$context.httpMethod",
        "$context.path",
        "$context.status",
        "$context.responseLatency",
        "$context.integrationErrorMessage",
    } == set(COMPACT_ACCESS_LOG_FORMAT.values())


def test_throttling_comes_from_context(custom_app: Synthesized) -> None:
    _, stage = only_resource(custom_app.api_json, "AWS::ApiGatewayV2::Stage")
    assert stage["Properties"]["DefaultRouteSettings"] == {
        "ThrottlingBurstLimit": 500,
        "ThrottlingRateLimit": 250,
    }


def test_cors_is_off_by_default(default_app: Synthesized) -> None:
    _, api = only_resource(default_app.api_json, "AWS::ApiGatewayV2::Api")
    assert "CorsConfiguration" not in api["Properties"]
    assert api["Properties"]["ProtocolType"] == "HTTP"


def test_cors_is_on_for_the_configured_origins_only(custom_app: Synthesized) -> None:
    _, api = only_resource(custom_app.api_json, "AWS::ApiGatewayV2::Api")
    cors = api["Properties"]["CorsConfiguration"]
    assert cors["AllowOrigins"] == ["https://console.example.com", "https://ops.example.com"]
    assert {"signature", "signature-input", "content-digest", "authorization"} <= set(cors["AllowHeaders"])


def test_api_name_carries_the_stage(default_app: Synthesized, custom_app: Synthesized) -> None:
    names = [
        only_resource(app.api_json, "AWS::ApiGatewayV2::Api")[1]["Properties"]["Name"]
        for app in (default_app, custom_app)
    ]
    assert names == ["fleetlink-dev", "fleetlink-prod"]


def test_api_url_is_an_output(default_app: Synthesized) -> None:
    api_id, _ = only_resource(default_app.api_json, "AWS::ApiGatewayV2::Api")
    url = default_app.api_json["Outputs"]["ApiUrl"]["Value"]
    assert {"Fn::GetAtt": [api_id, "ApiEndpoint"]} == url


def test_routes_added_later_are_wired_by_the_same_mechanism() -> None:
    # Given a route table and document that grew a relay route (agent) and a tunnel route (operator)
    document: dict[str, Any] = {
        "paths": {
            "/v1/relay/batch": {"post": {"security": [{"agentSignature": []}]}},
            "/v1/tunnels/{tunnel_id}": {"get": {"security": [{"operator": []}]}},
        }
    }
    table = [("relay", "POST", "/v1/relay/batch"), ("tunnels", "GET", "/v1/tunnels/{tunnel_id}")]
    # When the routes are derived
    # Then each gets its function and the authorization its security asks for
    assert routes(table, document) == [
        Route("relay", "POST", "/v1/relay/batch", Authorization.NONE),
        Route("tunnels", "GET", "/v1/tunnels/{tunnel_id}", Authorization.IAM),
    ]


def test_a_route_missing_from_the_document_stops_synthesis() -> None:
    with pytest.raises(ValueError, match="not the OpenAPI document"):
        routes([("operator", "GET", "/v1/nowhere")], {"paths": {}})


@pytest.mark.parametrize(
    ("security", "expected"),
    [
        (None, Authorization.NONE),
        ([], Authorization.NONE),
        ([{"operator": []}], Authorization.IAM),
        ([{"agentSignature": []}], Authorization.NONE),
        ([{"registrationToken": [], "agentSignature": []}], Authorization.NONE),
    ],
)
def test_authorization_follows_the_security_requirement(security: Any, expected: Authorization) -> None:
    assert authorization_of(security) is expected


@pytest.mark.parametrize(
    "security",
    [
        [{"agentSignature": []}, {"operator": []}],  # agent OR operator: one authorizer cannot say that
        [{"apiKey": []}],  # a scheme nobody enforces
    ],
)
def test_security_no_authorizer_can_enforce_stops_synthesis(security: Any) -> None:
    with pytest.raises(ValueError, match="cannot be enforced"):
        authorization_of(security)
