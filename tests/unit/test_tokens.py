"""Registration token secrets."""

from fleetlink.core.agents.tokens import (
    format_token,
    hash_secret,
    new_token_secret,
    parse_token,
    secret_matches,
)
from fleetlink.core.ids import IdPrefix, new_id


def test_token_round_trips_through_its_string_form() -> None:
    # Given a token id and secret
    token_id, secret = new_id(IdPrefix.TOKEN), new_token_secret()
    # When formatted and parsed / Then both parts come back
    assert parse_token(format_token(token_id, secret)) == (token_id, secret)


def test_garbage_is_not_a_token() -> None:
    for garbage in ["", "tok_123.abc", "Bearer x", "tok_" + "A" * 26 + "." + "x" * 10, "x" * 5000]:
        assert parse_token(garbage) is None


def test_only_the_hash_is_kept_and_it_matches_the_secret_alone() -> None:
    # Given a secret and its stored hash
    secret = new_token_secret()
    stored = hash_secret(secret)
    # Then the hash is not the secret, matches it, and nothing else
    assert secret not in stored
    assert secret_matches(secret, stored)
    assert not secret_matches(new_token_secret(), stored)
