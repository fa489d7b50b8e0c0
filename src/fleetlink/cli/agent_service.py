"""``fleetlink agent install-service``: a systemd unit running ``fleetlink agent run`` (agent/systemd.py)."""

from __future__ import annotations

import getpass
from typing import Annotated

import typer
from rich.markup import escape

from fleetlink.agent.identity import IdentityStore
from fleetlink.agent.systemd import fleetlink_command, systemd_unit, unit_name, unit_path
from fleetlink.agent.tasks.service import MAX_CONCURRENCY
from fleetlink.cli.options import StateDirOption
from fleetlink.cli.render import (
    err,
    out,
    reporting_errors,
)


def install_service(
    state_dir: StateDirOption = None,
    system: Annotated[
        bool,
        typer.Option(
            "--system/--user",
            help="A system unit in /etc/systemd/system (needs root), or a user unit in "
            "~/.config/systemd/user (default)",
        ),
    ] = False,
    print_only: Annotated[bool, typer.Option("--print", help="Print the unit; install nothing")] = False,
    name: Annotated[
        str | None,
        typer.Option(
            "--name",
            help="Unit name (default: fleetlink-agent, or fleetlink-agent-<dir> for another state dir)",
            show_default=False,
        ),
    ] = None,
    run_as: Annotated[
        str | None, typer.Option("--run-as", help="User of a system unit (default: you)", show_default=False)
    ] = None,
    concurrency: Annotated[
        int, typer.Option("--concurrency", min=1, max=MAX_CONCURRENCY, help="Executions run at once")
    ] = 4,
    stop_grace: Annotated[
        float, typer.Option("--stop-grace", min=0.0, help="On stop, seconds running tasks get to finish")
    ] = 30.0,
) -> None:
    """Write a systemd unit that runs `fleetlink agent run` for this state dir (one unit per agent).

    Two agents on one machine: register each in a state dir of its own, then install a unit per
    state dir (`--state-dir ~/.fleetlink/web`, `--state-dir ~/.fleetlink/db`).
    """
    identity_store = IdentityStore(state_dir)
    state_path = identity_store.path.resolve()
    with reporting_errors():
        identity = identity_store.load_identity()
    if identity is None:
        err().print(
            f"[yellow]warning: {escape(str(state_path))} holds no agent yet; register it before starting "
            f"the service: fleetlink agent register --token <token> --state-dir {escape(str(state_path))}"
            "[/yellow]"
        )
    unit = unit_name(state_path) if name is None else name.removesuffix(".service")
    text = systemd_unit(
        command=fleetlink_command(),
        state_dir=state_path,
        agent_id=identity.agent_id if identity else None,
        system=system,
        run_as=run_as or (getpass.getuser() if system else None),
        concurrency=concurrency,
        stop_grace_s=stop_grace,
    )
    if print_only:
        typer.echo(text, nl=False)
        return
    path = unit_path(unit, system=system)
    with reporting_errors():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    systemctl = "systemctl" if system else "systemctl --user"
    err().print(f"[green]wrote[/green] {escape(str(path))}; start it now and at every boot with:")
    out().print(f"  {systemctl} daemon-reload && {systemctl} enable --now {unit}", markup=False)
    if not system:
        out().print(
            "  loginctl enable-linger $USER    # keep it running when you are logged out", markup=False
        )
    journal = "journalctl" if system else "journalctl --user"
    out().print(f"  {journal} -u {unit} -f              # its log", markup=False)
