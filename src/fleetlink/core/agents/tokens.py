"""Registration token secrets: shown once, stored only as a SHA-256 hash."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

from fleetlink.core.ids import IdPrefix, id_pattern

_TOKEN = re.compile(id_pattern(IdPrefix.TOKEN)[1:-1] + r"\.[A-Za-z0-9_-]{43}")


def new_token_secret() -> str:
    return secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def format_token(token_id: str, secret: str) -> str:
    return f"{token_id}.{secret}"


def parse_token(token: str) -> tuple[str, str] | None:
    """(token_id, secret), or None when the string is not a token."""
    if not _TOKEN.fullmatch(token):
        return None
    token_id, secret = token.split(".", 1)
    return token_id, secret


def secret_matches(secret: str, secret_hash: str) -> bool:
    return hmac.compare_digest(hash_secret(secret), secret_hash)
