"""``fleetlink tasks output``: an attempt's complete stdout or stderr, written to stdout byte for byte
(``> file``): from the output bucket when it outgrew the inline copy, else the inline copy itself."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from fleetlink.cli.operator.command import OperatorCall
from fleetlink.cli.operator.task_output import ExecutionIdArgument, StreamChoice
from fleetlink.cli.render import fail
from fleetlink.client.http import FleetlinkApiError
from fleetlink.client.operator import OperatorClient, download_output

#: The problem that says an attempt has no object for the stream (its output fit inline).
NO_OBJECT = "output-object-not-found"


def write_inline(client: OperatorClient, execution_id: str, stream: str, attempt: int | None) -> None:
    """The attempt's inline copy of the stream, when it is the whole of it."""
    listed = client.execution_attempts(execution_id).attempts
    if attempt is not None:
        chosen = next((found for found in listed if found.attempt == attempt), None)
    else:  # as the server's default: the last that ended
        ended = [found for found in listed if found.finished_at is not None] or listed
        chosen = ended[-1] if ended else None
    if chosen is None:
        raise fail(f"execution {execution_id} has no attempt {attempt}")
    text, truncated = (
        (chosen.output, chosen.output_truncated)
        if stream == "stdout"
        else (chosen.stderr, chosen.stderr_truncated)
    )
    if truncated:
        raise fail(
            f"attempt {chosen.attempt} kept only the head and tail of its {stream} (no complete copy was "
            "uploaded)",
            fix=f"fleetlink tasks attempts {execution_id} shows them",
        )
    sys.stdout.buffer.write((text or "").encode())


def write_output(
    call: OperatorCall,
    execution_id: ExecutionIdArgument,
    stream: Annotated[
        StreamChoice, typer.Option("--stream", help="stdout (default) or stderr")
    ] = StreamChoice.STDOUT,
    attempt: Annotated[
        int | None, typer.Option("--attempt", min=1, help="Which attempt (default: the last that ended)")
    ] = None,
) -> None:
    """Write an execution's complete output to stdout, exactly as the command printed it: from the
    output bucket (its SHA-256 checked) when it outgrew the inline head and tail."""
    with call.session() as client:
        try:
            download = client.output_object(execution_id, stream.value, attempt)
        except FleetlinkApiError as error:
            if error.code != NO_OBJECT:
                raise
            write_inline(client, execution_id, stream.value, attempt)
        else:
            download_output(download, sys.stdout.buffer)
        sys.stdout.buffer.flush()
