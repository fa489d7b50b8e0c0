"""No plaintext token or private key in the table, the logs or an error body."""

from __future__ import annotations

import pytest

from fleetlink.api.deps import Deps
from fleetlink.auth.keys import private_key_to_pem
from tests.support import OPERATOR_TOKEN, Api, Machine


def test_secrets_stay_out_of_logs_errors_and_the_table(
    api: Api, deps: Deps, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a token minted and used, a failed attempt with a wrong secret, and an agent's key
    token = api.mint_token(max_uses=1)
    secret = token.split(".", 1)[1]
    agent = Machine("quiet")
    replies = [api.register(agent, token), api.register(Machine("other"), token)]
    replies.append(api.register(Machine("guess"), token.split(".")[0] + "." + "B" * 43))
    private_pem = private_key_to_pem(agent.key).strip().splitlines()[1]
    # When everything written anywhere is gathered
    logged = capsys.readouterr()
    stored = _all_items_text()
    assert agent.fingerprint in stored  # the gathering saw the registration
    # Then neither the token, its secret, the operator token nor the private key is in any of it
    for text in [logged.out, logged.err, stored, *(r.body for r in replies)]:
        for forbidden in (secret, OPERATOR_TOKEN, private_pem, "B" * 43):
            assert forbidden not in text


def _all_items_text() -> str:
    """Every item of the test table as text (moto's in-memory backend; no Scan API)."""
    from moto.dynamodb.models import dynamodb_backends

    from tests.conftest import TEST_TABLE

    table = dynamodb_backends["123456789012"]["us-east-1"].tables[TEST_TABLE]
    return "\n".join(str(item.to_json()) for item in table.all_items())
