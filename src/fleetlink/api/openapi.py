"""What the OpenAPI document says about the API as a whole: title, security schemes."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler.openapi.models import (
    APIKey,
    APIKeyIn,
    HTTPBearer,
)

import fleetlink


def describe() -> dict[str, Any]:
    return {
        "title": "fleetlink",
        "version": fleetlink.__version__,
        "summary": "Serverless control plane for fleets of agents",
        "description": "Agents sign every request per RFC 9421 (HTTP Message Signatures); operators use IAM "
        "(SigV4) in AWS or a bearer token on the local dev stack. Errors are RFC 9457 problem documents.",
        "security_schemes": {
            "agentSignature": APIKey(
                name="Signature",
                **{"in": APIKeyIn.header},
                description="RFC 9421 Signature + Signature-Input (keyid = agent id; ed25519 or "
                "rsa-pss-sha512; covers @method, @target-uri and content-digest)",
            ),
            "registrationToken": HTTPBearer(description="A registration token minted by an operator"),
            "operator": HTTPBearer(description="Operator token (dev stack); IAM SigV4 on a deployed stack"),
        },
    }
