"""``fleetlink agent rotate-key``: replace this agent's signing key, keeping its id, tags and work.

The new key is written beside the current one first (``signing_key.pem.new``, 0600); the server
installs it on a request signed by the current key with proof of the new one; only then does the new
key take the current one's place. If the answer is lost, both files are kept and the next run tells
which one the server holds."""

from __future__ import annotations

import hashlib
import os
from typing import Annotated

import typer
from cryptography.hazmat.primitives import serialization

from fleetlink.agent.identity import IdentityStore, key_alg_of
from fleetlink.auth.files import write_private_file
from fleetlink.auth.keys import PrivateKey, generate_private_key, load_private_key, private_key_to_pem
from fleetlink.cli.options import StateDirOption
from fleetlink.cli.render import err, escape, fail, reporting_errors, when
from fleetlink.core.entities import KeyAlg

PENDING_SUFFIX = ".new"


def key_fingerprint(key: PrivateKey) -> str:
    """``SHA256:<hex>`` of the public key's DER SubjectPublicKeyInfo: what tells agents apart."""
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "SHA256:" + hashlib.sha256(der).hexdigest()


def rotate_key(
    state_dir: StateDirOption = None,
    alg: Annotated[
        KeyAlg | None, typer.Option("--alg", help="Algorithm of the new key (default: the current one's)")
    ] = None,
) -> None:
    """Replace this agent's signing key (same agent id); restart a running `fleetlink agent run` after."""
    from fleetlink.cli.agent import _agent_context, _load_agent

    store = IdentityStore(state_dir)
    identity, client = _load_agent(store)
    pending = store.key_path.with_name(store.key_path.name + PENDING_SUFFIX)
    with reporting_errors(_agent_context(identity, state_dir)), client:
        if pending.exists():  # an earlier rotation whose answer was lost: offer that key again
            new_key = load_private_key(pending.read_text())
            new_alg = key_alg_of(new_key)
        else:
            new_alg = alg or identity.key_alg
            new_key = generate_private_key(new_alg)
            if not write_private_file(pending, private_key_to_pem(new_key).encode()):
                raise fail(f"{pending} appeared meanwhile", fix="run fleetlink agent rotate-key again")
        rotated = client.rotate_key(identity.agent_id, new_key, new_alg)
        os.replace(pending, store.key_path)
        store.save_identity(identity.__class__(**{**identity.__dict__, "key_alg": new_alg}))
    err().print(
        f"[green]key rotated[/green] for {rotated.agent_id} at {when(rotated.updated_at)}: "
        f"{new_alg.value} {key_fingerprint(new_key)}; saved in {escape(str(store.key_path))}\n"
        "A running agent daemon still signs with the old key: restart it "
        "(systemctl --user restart <unit>, or stop and start fleetlink agent run)."
    )
