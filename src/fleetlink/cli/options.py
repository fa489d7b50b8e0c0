"""Options shared by the node-side commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

StateDirOption = Annotated[
    Path | None,
    typer.Option(
        "--state-dir",
        envvar="FLEETLINK_STATE_DIR",
        metavar="PATH",
        help="Where the agent's key, identity and agent.db live (default: ~/.fleetlink/agent)",
        show_default=False,
    ),
]
