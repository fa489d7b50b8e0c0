"""The agent's identity on disk: its signing key (PEM, mode 0600) and ``identity.json``.

The state dir is ``~/.fleetlink/agent`` unless a parameter or ``FLEETLINK_STATE_DIR`` says otherwise.
The private key is never logged or printed; only its path is.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from dataclasses import asdict, dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ed25519

from fleetlink.auth.files import PRIVATE_FILE_MODE, write_private_file
from fleetlink.auth.keys import PrivateKey, generate_private_key, load_private_key, private_key_to_pem
from fleetlink.core.entities import KeyAlg

STATE_DIR_ENV = "FLEETLINK_STATE_DIR"
DEFAULT_STATE_DIR = Path("~/.fleetlink/agent")
KEY_FILE = "signing_key.pem"
IDENTITY_FILE = "identity.json"
STATE_DIR_MODE = 0o700


def state_dir_slug(state_dir: Path) -> str | None:
    """None for the default state dir; else its name made safe for names (``web``, ``db-1``): what
    tells apart the agents (and the units) of one machine."""
    if state_dir == resolve_state_dir(DEFAULT_STATE_DIR):
        return None
    return (re.sub(r"[^A-Za-z0-9_.-]+", "-", state_dir.name).strip("-._") or "agent")[:32]


class IdentityError(Exception):
    """The state dir holds something unusable (a key for another algorithm, a corrupt file)."""


def resolve_state_dir(state_dir: str | os.PathLike[str] | None = None) -> Path:
    """The state dir: ``state_dir`` if given, else ``$FLEETLINK_STATE_DIR``, else ``~/.fleetlink/agent``."""
    chosen = state_dir if state_dir is not None else os.environ.get(STATE_DIR_ENV) or DEFAULT_STATE_DIR
    return Path(chosen).expanduser()


def key_alg_of(key: PrivateKey) -> KeyAlg:
    """The signature algorithm a private key is used with."""
    return KeyAlg.ED25519 if isinstance(key, ed25519.Ed25519PrivateKey) else KeyAlg.RSA_PSS_SHA512


@dataclass(frozen=True)
class Identity:
    """Who this agent is to the control plane (``registered_at`` in epoch ms, server time)."""

    agent_id: str
    api_url: str
    key_alg: KeyAlg
    fingerprint: str
    registered_at: int


class IdentityStore:
    """Load-or-create access to the key and identity in one state dir."""

    def __init__(self, state_dir: str | os.PathLike[str] | None = None) -> None:
        self.path = resolve_state_dir(state_dir)

    @property
    def key_path(self) -> Path:
        return self.path / KEY_FILE

    @property
    def identity_path(self) -> Path:
        return self.path / IDENTITY_FILE

    def ensure_dir(self) -> Path:
        """Create the state dir (0700) if needed."""
        self.path.mkdir(mode=STATE_DIR_MODE, parents=True, exist_ok=True)
        return self.path

    def load_key(self) -> PrivateKey | None:
        """The signing key, or None if there is none yet."""
        try:
            pem = self.key_path.read_text()
        except FileNotFoundError:
            return None
        return load_private_key(pem)

    def load_or_create_key(self, alg: KeyAlg | None = None) -> tuple[PrivateKey, KeyAlg]:
        """The existing key, or a new one for ``alg`` (default Ed25519) written with mode 0600.

        Raises IdentityError if a key exists for another algorithm than ``alg``: keys are never
        replaced silently (delete the key file to rotate).
        """
        key = self.load_key()
        if key is None:
            self.ensure_dir()
            created = generate_private_key(alg or KeyAlg.ED25519)
            if write_private_file(self.key_path, private_key_to_pem(created).encode()):
                key = created
            else:  # another process created it first: use theirs
                key = self.load_key()
                if key is None:
                    raise IdentityError(f"{self.key_path} vanished while it was being created")
        existing = key_alg_of(key)
        if alg is not None and alg is not existing:
            raise IdentityError(
                f"{self.key_path} holds a {existing.value} key, not {alg.value}; "
                "delete it to change algorithm"
            )
        return key, existing

    def load_identity(self) -> Identity | None:
        """The saved identity, or None before the first registration."""
        try:
            raw = json.loads(self.identity_path.read_text())
            return Identity(
                agent_id=str(raw["agent_id"]),
                api_url=str(raw["api_url"]),
                key_alg=KeyAlg(raw["key_alg"]),
                fingerprint=str(raw["fingerprint"]),
                registered_at=int(raw["registered_at"]),
            )
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError) as exc:
            raise IdentityError(f"{self.identity_path} is not a valid identity file") from exc

    def save_identity(self, identity: Identity) -> None:
        """Write identity.json atomically."""
        self.ensure_dir()
        data = {**asdict(identity), "key_alg": identity.key_alg.value}
        temp = self.identity_path.with_name(f".{IDENTITY_FILE}.{secrets.token_hex(8)}.tmp")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle, indent=2, sort_keys=True)
            handle.write("\n")
        os.replace(temp, self.identity_path)
