"""Agent authentication: RFC 9421 HTTP Message Signatures and the keys behind them.

``signatures`` verifies (server) and signs (client) requests; ``keys`` parses and creates keys;
``httpx_auth`` (needs the ``agent`` extra) signs every request an ``httpx`` client sends.
"""
