"""Routes that answer a success other than 200 say so in the served document."""

from __future__ import annotations

import pytest

from fleetlink.api.document import openapi_document


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("post", "/v1/agents/{agent_id}/recovery-token", "201"),
        ("post", "/v1/agents/{agent_id}/tunnels", "201"),
        ("delete", "/v1/tunnels/{tunnel_id}", "204"),
    ],
)
def test_a_route_documents_the_success_status_it_answers(method: str, path: str, status: str) -> None:
    # Given the served document; When the route's responses are read
    responses = openapi_document()["paths"][path][method]["responses"]
    # Then the status its handler answers on success is listed (and no 200 it never sends)
    assert status in responses
    assert "200" not in responses


def test_a_no_content_answer_is_documented_without_a_body() -> None:
    # Given the served document; When the tunnel delete's 204 is read
    response = openapi_document()["paths"]["/v1/tunnels/{tunnel_id}"]["delete"]["responses"]["204"]
    # Then it has no content (a 204 carries no body, so no media type either)
    assert "content" not in response
