"""The ``fleetlink`` command line: main.py (root and ``dev``), agent.py, operator/, render.py."""
