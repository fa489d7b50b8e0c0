"""Relay sync: nodes send their records and query any node's; operators set read policies and see sync.

Agents sign every call; the node of a record is the signing agent. Operators query through
``/relay/records/query`` (API Gateway authorizes a route with IAM or not at all, so the operator's
form of ``/relay/query`` is a route of its own; same body, same answer, no read policy applied).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated

from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Body, Path

from fleetlink.api import security
from fleetlink.api.deps import get_deps
from fleetlink.api.params import AgentIdPath
from fleetlink.contract.relay import (
    BatchAnswer,
    BatchRequest,
    CollectionPolicy,
    NodeSyncState,
    QueryAnswer,
    QueryRequest,
    RecordResult,
    RelayRecord,
    collection_policy,
    policy_readers,
    query_record,
    record_result,
)
from fleetlink.core.agents.authorizing_tags import authorizing_tags
from fleetlink.core.errors import NotFound
from fleetlink.core.relay.ports import RecordQuery
from fleetlink.core.relay.records import COLLECTION_PATTERN
from fleetlink.core.roles import Role

router = Router()
AGENT = security.agent_access(["relay"])
VIEWER = security.operator_access(Role.VIEWER, ["relay"])
ADMIN = security.operator_access(Role.ADMIN, ["relay"])
CollectionPath = Annotated[str, Path(pattern=COLLECTION_PATTERN, description="Collection name")]


def _apply(records: list[RelayRecord]) -> list[RecordResult]:
    node_id = security.calling_agent(router).agent_id
    answers = get_deps().record_service.apply(node_id, [wire.to_incoming() for wire in records])
    return [record_result(answer) for answer in answers]


@router.post("/relay/immediate", summary="Send one record of this node", **AGENT)
def immediate(record: Annotated[RelayRecord, Body()]) -> RecordResult:
    return _apply([record])[0]


@router.post("/relay/batch", summary="Send 1-500 records of this node (each decided on its own)", **AGENT)
def batch(request: Annotated[BatchRequest, Body()]) -> BatchAnswer:
    return BatchAnswer(results=_apply(request.records))


def _query(request: QueryRequest, reader_tags: Mapping[str, str] | None) -> QueryAnswer:
    query = RecordQuery(**request.model_dump())
    page = get_deps().record_service.query(query, reader_tags=reader_tags)
    return QueryAnswer(records=[query_record(item) for item in page.items], cursor=page.cursor)


@router.post("/relay/query", summary="Records of any node, as the collection's read policy allows", **AGENT)
def agent_query(request: Annotated[QueryRequest, Body()]) -> QueryAnswer:
    return _query(request, authorizing_tags(security.calling_agent(router)))


@router.post(
    "/relay/records/query",
    summary="Records of any node (operators)",
    openapi_extensions=security.READS_ONLY,
    **VIEWER,
)
def operator_query(request: Annotated[QueryRequest, Body()]) -> QueryAnswer:
    return _query(request, None)


@router.put("/relay/collections/<collection>", summary="Set who may query a collection", **ADMIN)
def put_policy(collection: CollectionPath, policy: Annotated[CollectionPolicy, Body()]) -> CollectionPolicy:
    readers = policy_readers(policy)
    get_deps().record_service.set_readers(collection, readers, by=security.operator_actor(router))
    return collection_policy(readers)


@router.get("/relay/collections/<collection>", summary="Who may query a collection", **VIEWER)
def get_policy(collection: CollectionPath) -> CollectionPolicy:
    return collection_policy(get_deps().record_service.readers(collection))


@router.get("/relay/nodes/<agent_id>", summary="A node's sync as the cloud sees it", **VIEWER)
def node_sync(agent_id: AgentIdPath) -> NodeSyncState:
    state = get_deps().record_service.sync_state(agent_id)
    if state is None:
        raise NotFound("no record of this agent reached the relay", code="no-relay-sync")
    return NodeSyncState.model_validate(state, from_attributes=True)
