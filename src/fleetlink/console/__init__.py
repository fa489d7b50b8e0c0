"""``fleetlink console``: a local web console the operator runs on their own machine.

It listens on loopback and calls the control plane with the operator's own credentials (the dev
stack's token, or SigV4 from the default AWS credential chain), so no credential is hosted and
nothing new is reachable from the network. Pages are rendered on the server (Starlette + Jinja2)
and refreshed in place by htmx, which ships inside this package (``static/``): no CDN, offline.
"""
