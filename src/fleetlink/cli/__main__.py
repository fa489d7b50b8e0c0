"""``python -m fleetlink.cli``: the ``fleetlink`` command."""

from fleetlink.cli.main import main

main()
