"""Relay queries take integers strictly: a boolean is not a number (as on every other route)."""

from __future__ import annotations

import pytest

from tests.support import Api, Machine


@pytest.mark.parametrize("field", ["updated_since", "limit"])
def test_a_boolean_where_a_relay_query_wants_an_integer_is_a_422(api: Api, field: str) -> None:
    # Given a registered node
    node = Machine("strict-node")
    assert api.register(node, api.mint_token()).status == 201
    # When it queries with true where an integer is expected
    reply = api.signed("relay", node, "POST", "/v1/relay/query", {"collection": "inv", field: True})
    # Then the body is refused, not read as 1
    assert reply.status == 422, reply.body
