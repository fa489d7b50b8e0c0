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


@pytest.fixture(scope="session", autouse=True)
def one_botocore_loader() -> Iterator[None]:
    """Every botocore session of the run reads its service models through one loader.

    Each test's moto starts afresh (and resets boto3's default session), so every fixture built
    new botocore sessions, each parsing the DynamoDB model and the endpoint data from JSON again:
    about 0.2 s of every test. The loader only reads botocore's own data files; sharing it changes
    nothing a test observes.
    """
    import botocore.loaders
    import botocore.session

    loader = botocore.loaders.create_loader()
    per_session = botocore.session.Session._register_data_loader

    def register_shared_loader(session: botocore.session.Session) -> None:
        session._components.lazy_register_component("data_loader", lambda: loader)

    botocore.session.Session._register_data_loader = register_shared_loader
    yield
    botocore.session.Session._register_data_loader = per_session


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
