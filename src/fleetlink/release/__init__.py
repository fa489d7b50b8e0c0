"""Agent releases: the artifact, its signed manifest, installing it on a node, the release key.

``node`` uses only the standard library and imports nothing else of fleetlink: it runs before
fleetlink is installed (the served install script embeds its source). ``signing`` uses
``cryptography`` (operators and installed agents have it). ``build`` makes the artifact.
"""
