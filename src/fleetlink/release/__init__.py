"""Agent releases: the artifact, its signed manifest, installing it on a node, the release key.

``manifest`` (the signed manifest, its check, the download) and ``node`` (installing and switching
versions) use only the standard library and import nothing else of fleetlink: they run before
fleetlink is installed (``install_script`` carries their source to the node). ``signing`` uses
``cryptography`` (operators and installed agents have it). ``build`` makes the artifact.
"""
