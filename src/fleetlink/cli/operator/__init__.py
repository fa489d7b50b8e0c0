"""Operator command groups (agents, tokens, tasks) and what they share: the API URL and credentials."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer

from fleetlink.agent.sigv4 import SigV4Auth
from fleetlink.cli.render import DEV_TOKEN_FILE, CallContext, fail, is_loopback_url, reporting_errors
from fleetlink.client.operator import OperatorClient

UrlOption = Annotated[
    str | None,
    typer.Option(
        "--url",
        envvar="FLEETLINK_URL",
        help="API base URL, e.g. http://127.0.0.1:8080",
        show_default=False,
    ),
]
OperatorTokenOption = Annotated[
    str | None,
    typer.Option(
        "--operator-token",
        envvar="FLEETLINK_OPERATOR_TOKEN",
        help="Operator bearer token (dev stack); without one, requests are SigV4-signed (IAM)",
        show_default=False,
    ),
]


def operator_client(url: str | None, operator_token: str | None) -> OperatorClient:
    """Bearer token on the dev stack; without one, AWS SigV4 (IAM) for a deployed API.

    A loopback URL without a token is the dev stack missing its token: said so, with where it is.
    """
    if not url:
        raise fail(
            "no API URL",
            fix="export FLEETLINK_URL=<the URL `make run` (fleetlink dev) or `cdk deploy` printed>, "
            "or pass --url",
        )
    if operator_token:
        return OperatorClient(url, operator_token)
    if is_loopback_url(url):
        raise fail(
            f"FLEETLINK_OPERATOR_TOKEN is not set: the dev stack at {url} needs its operator token",
            fix="export FLEETLINK_OPERATOR_TOKEN=<the token `make run` (fleetlink dev) printed; "
            f"it is kept in {DEV_TOKEN_FILE}>, or pass --operator-token",
        )
    return OperatorClient(url, auth=SigV4Auth())


@contextmanager
def operator_session(url: str | None, operator_token: str | None) -> Iterator[OperatorClient]:
    """One command's operator client, closed after it; a failure in the block is printed as a message
    naming the fix (see ``reporting_errors``), with the URL that was called."""
    with reporting_errors(CallContext(url=url)), operator_client(url, operator_token) as client:
        yield client
