"""Why a registration was refused, and the command that fixes it (``fleetlink agent register``)."""

from __future__ import annotations

from fleetlink.client.http import FleetlinkApiError

ASK_FOR_A_NEW_ONE = (
    "ask an operator for a new one: fleetlink tokens create --max-uses N, then register with it"
)

#: A genuine token the control plane no longer accepts: (why, fix) by problem code.
TOKEN_REFUSALS = {
    "registration-token-expired": ("the token's lifetime (--ttl) is over", ASK_FOR_A_NEW_ONE),
    "registration-token-used-up": (
        "every registration the token allowed (--max-uses) was made",
        ASK_FOR_A_NEW_ONE.replace("--max-uses N", "--max-uses N (more uses)"),
    ),
    "registration-token-revoked": ("an operator revoked it (fleetlink tokens revoke)", ASK_FOR_A_NEW_ONE),
}


def explain_registration(error: FleetlinkApiError) -> tuple[str, str]:
    """(why, fix) for a refused `agent register --token`."""
    if error.code in TOKEN_REFUSALS:
        return TOKEN_REFUSALS[error.code]
    if error.status == 401:
        return (
            "the control plane did not accept the token: it is not one it minted, was cut or mistyped "
            "(a token is tok_<id>.<secret>), or belongs to another control plane",
            "copy the token whole, as `fleetlink tokens create` printed it, against the same --url; "
            "or mint a new one",
        )
    if error.status == 403 and error.code == "agent-revoked":
        return "the recovery token's agent was revoked", "register with a new registration token"
    return "", ""
