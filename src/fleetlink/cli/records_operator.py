"""Operator commands on the relay's records: ``records query --operator`` reads any collection with
the operator's credentials (no agent state dir needed), ``records policy`` shows or sets who may
query a collection."""

from __future__ import annotations

from functools import partial
from typing import Annotated

import typer

from fleetlink.cli.operator import operator_session
from fleetlink.cli.operator.command import OperatorCall
from fleetlink.cli.render import (
    escape,
    format_tags,
    out,
    parse_tags,
)
from fleetlink.client.operator import OperatorClient
from fleetlink.contract.relay import CollectionPolicy, QueryAnswer, QueryRequest, TagReaders


def operator_query(
    url: str | None, operator_token: str | None, request: QueryRequest, every: bool
) -> QueryAnswer:
    """The records an operator's query finds: one page, or every page with ``every``."""
    with operator_session(url, operator_token) as client:
        answer = client.query_records(request)
        found = list(answer.records)
        while every and answer.cursor:
            answer = client.query_records(request.model_copy(update={"cursor": answer.cursor}))
            found.extend(answer.records)
    return QueryAnswer(records=found, cursor=answer.cursor)


def policy(
    call: OperatorCall,
    collection: Annotated[str, typer.Argument(metavar="COLLECTION", help="Collection name")],
    fleet: Annotated[bool, typer.Option("--fleet", help="Set: every active agent may query it")] = False,
    tag: Annotated[
        list[str] | None,
        typer.Option(
            "--tag",
            metavar="KEY=VALUE",
            help="Set: only agents carrying all these tags may query it (repeat)",
        ),
    ] = None,
) -> None:
    """Show who may query a collection (operator), or set it with --fleet or --tag KEY=VALUE."""
    tags = parse_tags(tag)
    if fleet and tags:
        raise typer.BadParameter("either --fleet or --tag, not both", param_hint="--fleet")

    def ask(client: OperatorClient) -> CollectionPolicy:
        if fleet or tags:
            wanted = CollectionPolicy(readers="fleet" if fleet else TagReaders(tag=tags))
            return client.set_collection_policy(collection, wanted)
        return client.collection_policy(collection)

    call.answer(ask, partial(_print_policy, collection))


def _print_policy(collection: str, shown: CollectionPolicy) -> None:
    readers = (
        "every active agent (fleet)"
        if shown.readers == "fleet"
        else f"agents tagged {format_tags(shown.readers.tag)}"
    )
    out().print(f"{escape(collection)}: readable by {escape(readers)}")
