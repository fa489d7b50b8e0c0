"""Operator command groups (agents, tokens, tasks) and what they share: the API URL and credentials."""

from __future__ import annotations

from typing import Annotated

import typer

from fleetlink.agent.client import OperatorClient
from fleetlink.agent.sigv4 import SigV4Auth

UrlOption = Annotated[
    str, typer.Option("--url", envvar="FLEETLINK_URL", help="API base URL, e.g. http://127.0.0.1:8080")
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


def operator_client(url: str, operator_token: str | None) -> OperatorClient:
    """Bearer token on the dev stack; without one, AWS SigV4 (IAM) for a deployed API."""
    if operator_token:
        return OperatorClient(url, operator_token)
    return OperatorClient(url, auth=SigV4Auth())
