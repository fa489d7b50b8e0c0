"""``fleetlink agent service start|stop|restart|status`` and ``fleetlink agent uninstall``: an agent
installed by the served install script, as a service, and its removal (deregistered, signed)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Annotated

import typer

from fleetlink.agent.identity import IdentityStore
from fleetlink.agent.installation import Installation, InstallationError
from fleetlink.agent.systemd import systemd_unit
from fleetlink.cli.agent import _load_agent, agent_app
from fleetlink.cli.render import err, escape, fail, out, reporting_errors
from fleetlink.client.http import FleetlinkApiError, FleetlinkConnectionError
from fleetlink.release import manifest, node

service_app = typer.Typer(
    help="The installed agent's service: systemd where it runs, else a detached process.",
    no_args_is_help=True,
)
agent_app.add_typer(service_app, name="service")

PrefixOption = Annotated[
    Path | None,
    typer.Option(
        "--prefix",
        envvar="FLEETLINK_INSTALL_PREFIX",
        help="The installation (default: the one this fleetlink runs from)",
        show_default=False,
    ),
]


def _installation(prefix: Path | None) -> Installation:
    if prefix is not None and (prefix / "etc" / node.CONFIG_FILE).is_file():
        return Installation(prefix.absolute())
    found = Installation.current()
    if found is None:
        raise fail(
            "no installed agent here: these commands manage an agent installed by the install script",
            fix="pass --prefix <where install.sh put it> (default /opt/fleetlink)",
        )
    return found


def _unit(installation: Installation) -> str:
    identity = IdentityStore(installation.state_dir).load_identity()
    return systemd_unit(
        command=str(installation.launcher),
        state_dir=installation.state_dir,
        agent_id=identity.agent_id if identity else None,
        system=True,
        run_as=None,
        concurrency=4,
        stop_grace_s=30.0,
    )


@service_app.command("start")
def service_start(prefix: PrefixOption = None) -> None:
    """Start the agent as a service (installed and enabled at boot with systemd); safe to re-run."""
    installation = _installation(prefix)
    try:
        said = installation.start(_unit(installation))
    except (InstallationError, OSError) as error:
        raise fail(f"cannot start the agent: {error}") from None
    err().print(f"[green]agent service[/green]: {escape(said)}")


@service_app.command("stop")
def service_stop(prefix: PrefixOption = None) -> None:
    """Stop the agent service."""
    installation = _installation(prefix)
    stopped = installation.stop()
    err().print("agent stopped" if stopped else "the agent was not running")


@service_app.command("restart")
def service_restart(prefix: PrefixOption = None) -> None:
    """Restart the agent service (e.g. after switching versions by hand)."""
    installation = _installation(prefix)
    try:
        installation.restart()
    except (InstallationError, OSError) as error:
        raise fail(f"cannot restart the agent: {error}") from None
    err().print("agent restarted")


@service_app.command("status")
def service_status(prefix: PrefixOption = None) -> None:
    """The installation: version, previous version, how the service runs."""
    installation = _installation(prefix)
    config = installation.config()
    pid = installation.running_pid()
    rows = {
        "prefix": str(installation.prefix),
        "version": node.current_version(installation.prefix) or "-",
        "previous": node.previous_version(installation.prefix) or "-",
        "service": str(config.get("service", "-")),
        "running": f"pid {pid}"
        if pid
        else ("see systemctl status" if config.get("service") == "systemd" else "no"),
        "release key": manifest.key_id_of(installation.release_key_file.read_text())
        if installation.release_key_file.is_file()
        else "-",
    }
    for name, value in rows.items():
        out().print(f"{name:12} {value}", markup=False)


@agent_app.command("uninstall")
def uninstall(
    prefix: PrefixOption = None,
    force: Annotated[
        bool, typer.Option("--force", help="Remove the installation even if the API cannot be told")
    ] = False,
) -> None:
    """Deregister this agent (a signed request: it is soft-deleted and revoked), stop and remove its
    service, and delete the installation (every version, the state dir with its keys, logs)."""
    installation = _installation(prefix)
    store = IdentityStore(installation.state_dir)
    if store.load_identity() is not None:
        try:
            with reporting_errors():
                identity, client = _load_agent(store)
                with client:
                    from fleetlink.agent.decommission import deregister

                    deregister(client, identity.agent_id)
            err().print(f"deregistered agent {identity.agent_id}")
        except typer.Exit:
            if not force:
                raise
            err().print("[yellow]could not deregister; removing anyway (--force)[/yellow]")
        except (FleetlinkApiError, FleetlinkConnectionError) as error:
            if not force:
                raise fail(f"could not deregister: {error}", fix="retry, or pass --force") from None
            err().print(f"[yellow]could not deregister ({escape(str(error))}); removing anyway[/yellow]")
    installation.remove_service()
    shutil.rmtree(installation.prefix)
    err().print(f"[green]uninstalled[/green]: {escape(str(installation.prefix))} removed")


@agent_app.command("upgrade-apply", hidden=True)
def upgrade_apply(prefix: Annotated[Path, typer.Option("--prefix")]) -> None:
    """The switcher an upgrade starts (detached, on the old version): switch, wait for the new
    version's heartbeat, else roll back."""
    from fleetlink.agent.updates import main_apply

    raise typer.Exit(main_apply(prefix))
