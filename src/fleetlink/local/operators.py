"""The dev stack's named operator tokens with roles (``fleetlink dev --operator NAME:ROLE``).

Kept in the data folder (``operators.json``, 0600) so a restart keeps every name's token; the
handlers are given only their SHA-256 (``FLEETLINK_OPERATOR_TOKENS``). The stack's one generated
token stays and is the admin's.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from fleetlink.api.settings import DEFAULT_OPERATOR_NAME
from fleetlink.core.roles import Role, parse_role
from fleetlink.local.persist import DataDirError, write_private

OPERATORS_FILE = "operators.json"
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class NamedToken:
    name: str
    role: Role
    token: str

    def configured(self) -> dict[str, str]:
        """What the handlers are told: the name, the role and the token's hash (never the token)."""
        return {
            "name": self.name,
            "role": self.role.value,
            "sha256": hashlib.sha256(self.token.encode()).hexdigest(),
        }


def parse_operator(text: str) -> tuple[str, Role]:
    """``NAME:ROLE`` (e.g. ``alice:viewer``); a ValueError that names the fix otherwise."""
    name, sep, role = text.partition(":")
    name = name.strip().lower()
    if not sep:
        raise ValueError(f"{text!r}: write NAME:ROLE, e.g. alice:viewer")
    if not _NAME.match(name):
        raise ValueError(f"{name!r}: a name is 1-64 of a-z 0-9 _ . - (starting with a letter or digit)")
    if name == DEFAULT_OPERATOR_NAME:
        raise ValueError(f"{name!r} is the stack's own admin token: choose another name")
    return name, parse_role(role)


def resolve_tokens(wanted: Mapping[str, Role], data_dir: Path | None) -> dict[str, NamedToken]:
    """Every named token: those kept in ``data_dir`` (roles updated to ``wanted``) and new ones."""
    kept: dict[str, NamedToken] = {}
    path = data_dir / OPERATORS_FILE if data_dir is not None else None
    if path is not None and path.exists():
        try:
            for name, entry in json.loads(path.read_text(encoding="utf-8")).items():
                kept[name] = NamedToken(name, parse_role(entry["role"]), str(entry["token"]))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise DataDirError(f"cannot read {path}: {exc} (move it away to start afresh)") from exc
    for name, role in wanted.items():
        token = kept[name].token if name in kept else secrets.token_urlsafe(24)
        kept[name] = NamedToken(name, role, token)
    if path is not None and kept:
        document = {token.name: {"role": token.role.value, "token": token.token} for token in kept.values()}
        write_private(path, json.dumps(document, indent=2) + "\n")
    return kept


def tokens_env(tokens: Mapping[str, NamedToken]) -> str:
    """``FLEETLINK_OPERATOR_TOKENS`` for these tokens."""
    return json.dumps([token.configured() for token in tokens.values()])
