"""Shared fixtures: moto-backed table and the real handlers, with a clock tests can move."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import pytest

from fleetlink.api.deps import Deps, build_deps, set_deps
from fleetlink.api.settings import OperatorAuth, Settings
from fleetlink.core.clock import FixedClock
from fleetlink.local.moto_backend import local_dynamodb
from tests.support import NOW_MS, OPERATOR_TOKEN, Api, role_tokens_setting

TEST_TABLE = "fleetlink-test"


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(NOW_MS)


@pytest.fixture
def deps(clock: FixedClock) -> Iterator[Deps]:
    """A fresh moto table, and the handlers' deps bound to it with the test clock."""
    with local_dynamodb(TEST_TABLE):
        settings = Settings(
            table_name=TEST_TABLE,
            region="us-east-1",
            operator_auth=OperatorAuth.TOKEN,
            operator_token_sha256=hashlib.sha256(OPERATOR_TOKEN.encode()).hexdigest(),
            operator_tokens=role_tokens_setting(),
        )
        built = build_deps(settings, clock=clock)
        set_deps(built)
        yield built
        set_deps(None)


@pytest.fixture
def api(deps: Deps, clock: FixedClock) -> Api:
    return Api(clock)
