"""``fleetlink tasks output``: an attempt's complete stdout or stderr, from the output bucket,
written to stdout byte for byte (``> file``)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from fleetlink.cli.operator import OperatorTokenOption, UrlOption, operator_client
from fleetlink.cli.operator.task_output import StreamChoice
from fleetlink.cli.render import CallContext, reporting_errors
from fleetlink.client.operator import download_output


def register_download_command(app: typer.Typer) -> None:
    """Add ``output`` to the tasks command group."""

    @app.command("output")
    def output(
        execution_id: Annotated[str, typer.Argument(help="Execution id (exe_...)")],
        stream: Annotated[
            StreamChoice, typer.Option("--stream", help="stdout (default) or stderr")
        ] = StreamChoice.STDOUT,
        attempt: Annotated[
            int | None, typer.Option("--attempt", min=1, help="Which attempt (default: the last that ended)")
        ] = None,
        url: UrlOption = None,
        operator_token: OperatorTokenOption = None,
    ) -> None:
        """Write an execution's complete output to stdout, exactly as the command printed it (kept
        in the output bucket when it outgrew the inline head and tail); its SHA-256 is checked."""
        with reporting_errors(CallContext(url=url)), operator_client(url, operator_token) as client:
            download = client.output_object(execution_id, stream.value, attempt)
            download_output(download, sys.stdout.buffer)
            sys.stdout.buffer.flush()
