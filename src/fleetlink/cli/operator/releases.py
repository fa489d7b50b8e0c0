"""``fleetlink release``: the release key (keygen, rotate-key) and publishing signed agent artifacts."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path
from typing import Annotated

import httpx
import typer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fleetlink.cli.operator.command import OperatorCall, operator_command
from fleetlink.cli.render import (
    Column,
    err,
    escape,
    fail,
    out,
    print_table,
    when,
)
from fleetlink.client.http import FleetlinkApiError
from fleetlink.client.operator import OperatorClient
from fleetlink.core.releases.model import Release, ReleaseKey, ReleaseList, ReleaseUpload
from fleetlink.release import signing
from fleetlink.release.node import RELEASE_FILE

release_app = typer.Typer(
    help="Operator: the release key and signed agent releases (keygen, publish, ls, rotate-key).",
    no_args_is_help=True,
)

KeyOption = Annotated[
    Path,
    typer.Option("--key", envvar="FLEETLINK_RELEASE_KEY", help="The release private key (PEM, mode 0600)"),
]


def _set_key(client: OperatorClient, public_pem: str, rotation_signature: str | None = None) -> ReleaseKey:
    body = {"public_key": public_pem} | (
        {"rotation_signature": rotation_signature} if rotation_signature else {}
    )
    return client._call(ReleaseKey, "PUT", "/releases/key", body=body)


def _current_key(client: OperatorClient) -> ReleaseKey | None:
    try:
        return client._call(ReleaseKey, "GET", "/releases/key")
    except FleetlinkApiError as error:
        if error.status == 404:
            return None
        raise


def _load_key(path: Path) -> Ed25519PrivateKey:
    try:
        return signing.load_private(path)
    except FileNotFoundError:
        raise fail(f"no release key at {path}", fix="fleetlink release keygen --out <file>") from None
    except (ValueError, signing.ReleaseSignatureError) as error:
        raise fail(str(error)) from None


@release_app.command("keygen")
def keygen(
    out_path: Annotated[
        Path, typer.Option("--out", help="Where the private key goes (0600; .pub next to it)")
    ],
) -> None:
    """Make an Ed25519 release key. Keep the private file offline and backed up: whoever holds it can
    ship code to the whole fleet; losing it means re-installing every node to pin a new one."""
    try:
        key = signing.generate(out_path)
    except FileExistsError as error:
        raise fail(str(error), fix="pass another --out") from None
    err().print(
        f"[green]release key {signing.key_id(key.public_key())}[/green]: "
        f"private {escape(str(out_path))} (0600), public {escape(str(out_path))}.pub"
    )
    typer.echo(signing.key_id(key.public_key()))


def _artifact_identity(path: Path) -> tuple[str, str]:
    """(version, platform) from the artifact's RELEASE.json."""
    try:
        with tarfile.open(path, "r:gz") as archive:
            member = next(
                m for m in archive.getmembers() if m.name.count("/") == 1 and m.name.endswith(RELEASE_FILE)
            )
            handle = archive.extractfile(member)
            info = json.loads(handle.read()) if handle else {}
    except (OSError, tarfile.TarError, StopIteration, ValueError):
        raise fail(f"{path} is not an agent artifact", fix="build one with make agent-dist") from None
    return str(info.get("version")), str(info.get("platform"))


@operator_command(release_app, "publish", json_output=False)
def publish(
    call: OperatorCall,
    artifacts: Annotated[
        list[Path], typer.Argument(help="Artifacts from `make agent-dist` (dist/agent/*.tar.gz)")
    ],
    key_path: KeyOption,
) -> None:
    """Sign each artifact with the release key and upload it; nodes can then install or upgrade to it.

    The first publish sets the API's release key; a different key afterwards needs `rotate-key`.
    """
    key = _load_key(key_path)
    public = signing.public_pem(key.public_key())
    with call.session() as client:
        current = _current_key(client)
        if current is None:
            current = _set_key(client, public)
            err().print(f"release key {current.key_id} set: nodes installed from now on pin it")
        elif current.key_id != signing.key_id(key.public_key()):
            raise fail(
                f"the API's release key is {current.key_id}, "
                f"{key_path} is {signing.key_id(key.public_key())}",
                fix="sign with the current key, or move the fleet: "
                "fleetlink release rotate-key --old ... --new ...",
            )
        for artifact in artifacts:
            version, platform_name = _artifact_identity(artifact)
            signed = signing.sign_artifact(key, version, platform_name, artifact)
            body = {
                "version": version,
                "platform": platform_name,
                "sha256": signed.sha256,
                "size": signed.size,
                "signature": signed.signature,
            }
            upload = client._call(ReleaseUpload, "POST", "/releases", body=body)
            if upload.release.status.value != "published":
                with artifact.open("rb") as handle:
                    response = httpx.put(
                        upload.upload_url, content=handle, headers=upload.upload_headers, timeout=300
                    )
                if response.is_error:
                    raise fail(
                        f"uploading {artifact.name} failed: {response.status_code} {response.text[:200]}"
                    )
            release = client._call(Release, "POST", f"/releases/{version}/{platform_name}/complete")
            err().print(
                f"[green]published[/green] {version} ({platform_name}) "
                f"{signed.size} bytes sha256 {signed.sha256}"
            )
            typer.echo(f"{release.version} {release.platform}")


@operator_command(release_app, "ls")
def list_releases(call: OperatorCall) -> None:
    """Releases, newest version first."""
    call.answer(lambda client: client._call(ReleaseList, "GET", "/releases").items, _print_releases)


def _print_releases(releases: list[Release]) -> None:
    if not releases:
        err().print("no releases")
        return
    columns = [
        Column("VERSION"),
        Column("PLATFORM"),
        Column("STATUS"),
        Column("SIZE"),
        Column("KEY"),
        Column("PUBLISHED"),
    ]
    rows = [
        [
            r.version,
            r.platform,
            r.status.value,
            f"{r.size / 1e6:.1f} MB",
            r.key_id,
            when(r.published_at) if r.published_at else "-",
        ]
        for r in releases
    ]
    print_table(columns, rows)


@operator_command(release_app, "rotate-key", json_output=False)
def rotate_key(
    call: OperatorCall,
    old: Annotated[Path, typer.Option("--old", help="The current release private key")],
    new: Annotated[
        Path, typer.Option("--new", help="The new release private key (fleetlink release keygen)")
    ],
) -> None:
    """Move the fleet to a new release key: the old key signs the new one, and agents accept the new
    key only with that signature."""
    old_key, new_key = _load_key(old), _load_key(new)
    signature = signing.sign_rotation(old_key, new_key.public_key())
    with call.session() as client:
        key = _set_key(client, signing.public_pem(new_key.public_key()), signature)
    out().print(f"release key is now {key.key_id} (signed by {key.previous_key_id})", markup=False)
