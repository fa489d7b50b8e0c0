"""Relay sync on the node: a local-first record store (``RecordStore``), its sync worker
(``RelayService``), the signed HTTP client of ``/v1/relay/*`` and the ``records`` command line."""
