"""The store adapters' one boundary: DynamoDB failures leave an adapter as domain errors."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from fleetlink.core.errors import Throttled, Unavailable
from fleetlink.store.errors import translates_store_errors


def _client_error(code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code}}, "PutItem")


@translates_store_errors
class Adapter:
    def __init__(self, code: str) -> None:
        self.code = code
        self.seen_inside: list[str] = []

    def write(self) -> None:
        raise _client_error(self.code)

    def write_and_handle(self) -> str:
        try:
            self.write()
        except ClientError as error:  # an adapter method handling another's store error sees it as is
            self.seen_inside.append(error.response["Error"]["Code"])
            raise
        return "unreachable"

    @staticmethod
    def unreachable() -> None:
        raise EndpointConnectionError(endpoint_url="http://127.0.0.1:1")


def test_throttling_leaves_the_adapter_as_a_retryable_domain_error() -> None:
    # Given an adapter whose write DynamoDB throttles / When it is called / Then core gets a 429 error
    with pytest.raises(Throttled) as raised:
        Adapter("ProvisionedThroughputExceededException").write()
    assert raised.value.retry_after_s == 1


def test_only_the_outermost_adapter_call_translates() -> None:
    # Given an adapter method that handles a store error raised by another method of its adapter
    adapter = Adapter("ThrottlingException")
    # When it is called
    with pytest.raises(Throttled):
        adapter.write_and_handle()
    # Then inside, the error was DynamoDB's own; at the boundary, a domain error
    assert adapter.seen_inside == ["ThrottlingException"]


def test_static_methods_translate_too_and_no_answer_is_unavailable() -> None:
    # Given a static method whose store cannot be reached / When called / Then a 503 error
    with pytest.raises(Unavailable):
        Adapter.unreachable()


def test_a_failure_no_rule_covers_goes_on_unchanged() -> None:
    # Given a validation error (a bug, not the store's state) / When raised / Then it stays itself (500)
    with pytest.raises(ClientError):
        Adapter("ValidationException").write()
