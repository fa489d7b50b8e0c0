"""The dev stack's Lambda inputs look like what API Gateway and EventBridge send."""

from __future__ import annotations

import base64

from fleetlink.local.events import LocalLambdaContext, http_api_event, scheduled_event
from fleetlink.local.server import RouteTable

HOST = "127.0.0.1:8080"
ROUTES = [
    ("heartbeat", "POST", "/v1/agents/{agent_id}/heartbeat"),
    ("operator", "GET", "/v1/agents/{agent_id}"),
    ("registration", "POST", "/v1/agents/register"),
]


def test_event_is_payload_version_2_with_the_matched_route_key() -> None:
    # Given a heartbeat request matched to its route
    match = RouteTable(ROUTES).match("POST", "/v1/agents/agt_1/heartbeat")
    assert match is not None

    # When it becomes an event
    event = http_api_event(
        "POST",
        "/v1/agents/agt_1/heartbeat",
        domain_name=HOST,
        route_key=match.route.route_key,
        path_parameters=match.path_parameters,
    )

    # Then it carries the route key API Gateway sets, in both places
    assert event["version"] == "2.0"
    assert event["routeKey"] == "POST /v1/agents/{agent_id}/heartbeat"
    assert event["requestContext"]["routeKey"] == event["routeKey"]
    assert event["requestContext"]["stage"] == "$default"


def test_path_parameters_come_from_the_route_template() -> None:
    # Given a path with an agent id in it
    # When it is matched
    match = RouteTable(ROUTES).match("POST", "/v1/agents/agt_01ABC/heartbeat")

    # Then the template's parameter holds the segment
    assert match is not None
    assert match.path_parameters == {"agent_id": "agt_01ABC"}


def test_a_literal_route_wins_over_a_parameter_route() -> None:
    # Given /v1/agents/register, which /v1/agents/{agent_id} also matches
    table = RouteTable([*ROUTES, ("operator", "POST", "/v1/agents/{agent_id}")])

    # When a POST to it is matched
    match = table.match("POST", "/v1/agents/register")

    # Then the literal route serves it, as in API Gateway
    assert match is not None
    assert match.route.function == "registration"


def test_a_path_param_does_not_span_segments() -> None:
    # Given a path with an extra segment where the parameter is
    # When it is matched
    match = RouteTable(ROUTES).match("GET", "/v1/agents/a/b")

    # Then no route matches
    assert match is None


def test_allowed_methods_name_what_the_path_accepts() -> None:
    # Given a path that only has a POST route
    # When the allowed methods are asked for
    allowed = RouteTable(ROUTES).allowed_methods("/v1/agents/agt_1/heartbeat")

    # Then POST is the one
    assert allowed == ["POST"]


def test_query_string_is_raw_and_parsed_with_repeats_comma_joined() -> None:
    # Given a query with a repeated, percent-encoded parameter
    # When the event is built
    event = http_api_event("GET", "/v1/agents", domain_name=HOST, raw_query="tag=a%3Ab&tag=c&limit=5")

    # Then rawQueryString is untouched and queryStringParameters decoded and joined
    assert event["rawQueryString"] == "tag=a%3Ab&tag=c&limit=5"
    assert event["queryStringParameters"] == {"tag": "a:b,c", "limit": "5"}


def test_no_query_means_no_query_parameters_field() -> None:
    # Given a request without a query
    # When the event is built
    event = http_api_event("GET", "/v1/health", domain_name=HOST)

    # Then, as in API Gateway, the field is absent and the raw string empty
    assert "queryStringParameters" not in event
    assert event["rawQueryString"] == ""


def test_header_names_are_lower_cased_and_repeats_comma_joined() -> None:
    # Given mixed-case headers, one of them repeated
    headers = [("Content-Type", "application/json"), ("X-Thing", "a"), ("x-thing", "b")]

    # When the event is built
    event = http_api_event("POST", "/v1/x", domain_name=HOST, headers=headers, body=b"{}")

    # Then names are lower case and the repeated values joined
    assert event["headers"]["content-type"] == "application/json"
    assert event["headers"]["x-thing"] == "a,b"
    assert all(name == name.lower() for name in event["headers"])


def test_forwarded_proto_says_http_so_signed_uris_rebuild() -> None:
    # Given a client that claims https
    # When the event is built
    event = http_api_event("GET", "/v1/x", domain_name=HOST, headers={"X-Forwarded-Proto": "https"})

    # Then the dev server says how it was really reached, and where
    assert event["headers"]["x-forwarded-proto"] == "http"
    assert event["requestContext"]["domainName"] == HOST


def test_cookies_move_from_headers_to_the_cookies_field() -> None:
    # Given a Cookie header with two cookies
    # When the event is built
    event = http_api_event("GET", "/v1/x", domain_name=HOST, headers={"Cookie": "a=1; b=2"})

    # Then they are listed in cookies, not headers
    assert event["cookies"] == ["a=1", "b=2"]
    assert "cookie" not in event["headers"]


def test_a_utf8_body_is_text() -> None:
    # Given a JSON body
    # When the event is built
    event = http_api_event("POST", "/v1/x", domain_name=HOST, body='{"name": "é"}'.encode())

    # Then it is passed as text
    assert event["body"] == '{"name": "é"}'
    assert event["isBase64Encoded"] is False


def test_a_binary_body_is_base64() -> None:
    # Given bytes that are not UTF-8
    raw = b"\xff\xfe\x00\x01"

    # When the event is built
    event = http_api_event("POST", "/v1/x", domain_name=HOST, body=raw)

    # Then the body is base64 and flagged so
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == raw


def test_request_context_describes_the_http_request() -> None:
    # Given a request from a client with a user agent
    # When the event is built at a known time
    event = http_api_event(
        "get", "/v1/health", domain_name=HOST, headers={"User-Agent": "curl/8"}, now_ms=1_700_000_000_123
    )

    # Then the request context carries method, path, client and time as API Gateway does
    context = event["requestContext"]
    assert context["http"] == {
        "method": "GET",
        "path": "/v1/health",
        "protocol": "HTTP/1.1",
        "sourceIp": "127.0.0.1",
        "userAgent": "curl/8",
    }
    assert context["timeEpoch"] == 1_700_000_000_123
    assert context["time"] == "14/Nov/2023:22:13:20 +0000"
    assert context["domainPrefix"] == "127"


def test_every_request_gets_its_own_request_id() -> None:
    # Given two identical requests
    # When their events are built
    first = http_api_event("GET", "/v1/health", domain_name=HOST)
    second = http_api_event("GET", "/v1/health", domain_name=HOST)

    # Then their request ids differ
    assert first["requestContext"]["requestId"] != second["requestContext"]["requestId"]


def test_scheduled_event_names_the_duty() -> None:
    # Given a duty name
    # When the scheduled event is built
    event = scheduled_event("expire-tokens")

    # Then it is an EventBridge scheduled event carrying the duty
    assert event["detail-type"] == "Scheduled Event"
    assert event["source"] == "aws.events"
    assert event["detail"] == {"duty": "expire-tokens"}


def test_lambda_context_counts_down_from_its_timeout() -> None:
    # Given a context with a 1 s timeout
    context = LocalLambdaContext(function_name="fleetlink-operator", timeout_ms=1000)

    # When the remaining time is read
    remaining = context.get_remaining_time_in_millis()

    # Then it is within the timeout, and the context names its function
    assert 0 <= remaining <= 1000
    assert context.invoked_function_arn.endswith(":function:fleetlink-operator")
