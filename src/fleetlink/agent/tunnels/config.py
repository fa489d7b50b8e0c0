"""The ``[tunnels]`` part of the agent's config file, ``agent.toml`` in the state dir.

Every key is optional; a missing file means the defaults (loopback-only allow list, no relay).
See docs/tunnels.md for an example.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fleetlink.agent.tunnels.policy import DEFAULT_ALLOW, AllowList

CONFIG_FILE = "agent.toml"


class ConfigError(ValueError):
    """The config file cannot be read or holds a wrong value (the message says which)."""


@dataclass(frozen=True)
class RelayConfig:
    """An SSH host the user owns, to which self_hosted tunnels are reverse-forwarded."""

    host: str
    user: str
    identity_file: Path
    known_hosts: Path
    port: int = 22
    remote_bind: str = "127.0.0.1"
    public_host: str | None = None
    #: Tunnel name → port on the relay; a tunnel not listed gets a port the relay allocates.
    ports: dict[str, int] = field(default_factory=dict)
    ssh_binary: str = "ssh"
    keepalive_s: int = 15


@dataclass(frozen=True)
class TunnelsConfig:
    allow: AllowList = field(default_factory=lambda: AllowList.parse(DEFAULT_ALLOW))
    health_interval_s: float = 10.0
    backoff_base_s: float = 1.0
    backoff_max_s: float = 60.0
    #: A provider up this long has its restart count reset.
    stable_after_s: float = 60.0
    #: Address the self_hosted proxy (and the router in front of other providers) listens on.
    listen_host: str = "127.0.0.1"
    #: Tunnel name → port for the self_hosted listener; unlisted tunnels get a free port.
    listen_ports: dict[str, int] = field(default_factory=dict)
    binaries: dict[str, str] = field(
        default_factory=lambda: {"cloudflared": "cloudflared", "ngrok": "ngrok", "tailscale": "tailscale"}
    )
    tailscale_socket: str | None = None
    #: Publish tailscale tunnels on the internet (Funnel) instead of the tailnet only (serve).
    tailscale_funnel: bool = False
    relay: RelayConfig | None = None
    event_retention_days: int = 30


def _number(table: dict[str, Any], key: str, default: float, *, low: float, high: float) -> float:
    value = table.get(key, default)
    if not isinstance(value, int | float) or isinstance(value, bool) or not low <= value <= high:
        raise ConfigError(f"tunnels.{key} must be a number from {low} to {high}")
    return float(value)


def _ports(table: Any, where: str) -> dict[str, int]:
    if not isinstance(table, dict) or not all(
        isinstance(k, str) and isinstance(v, int) and 0 <= v <= 65535 for k, v in table.items()
    ):
        raise ConfigError(f"{where} maps tunnel names to ports 0-65535")
    return dict(table)


def _relay(table: Any, state_dir: Path) -> RelayConfig:
    if not isinstance(table, dict):
        raise ConfigError("tunnels.relay must be a table")
    for key in ("host", "user", "identity_file", "known_hosts"):
        if not isinstance(table.get(key), str) or not table[key]:
            raise ConfigError(f"tunnels.relay.{key} is required")
    port = table.get("port", 22)
    if not isinstance(port, int) or not 1 <= port <= 65535:
        raise ConfigError("tunnels.relay.port must be 1-65535")
    return RelayConfig(
        host=table["host"],
        user=table["user"],
        identity_file=state_dir / table["identity_file"],
        known_hosts=state_dir / table["known_hosts"],
        port=port,
        remote_bind=str(table.get("remote_bind", "127.0.0.1")),
        public_host=table.get("public_host"),
        ports=_ports(table.get("ports", {}), "tunnels.relay.ports"),
        ssh_binary=str(table.get("ssh_binary", "ssh")),
        keepalive_s=int(_number(table, "keepalive_s", 15, low=1, high=600)),
    )


def parse_config(document: dict[str, Any], state_dir: Path) -> TunnelsConfig:
    """Build the config from a parsed ``agent.toml`` (other sections are ignored)."""
    table = document.get("tunnels", {})
    if not isinstance(table, dict):
        raise ConfigError("tunnels must be a table")
    allow = table.get("allow", list(DEFAULT_ALLOW))
    if not isinstance(allow, list) or not all(isinstance(item, str) for item in allow):
        raise ConfigError("tunnels.allow must be a list of CIDRs or host names")
    try:
        allow_list = AllowList.parse(allow)
    except ValueError as error:
        raise ConfigError(f"tunnels.allow: {error}") from None
    binaries = {"cloudflared": "cloudflared", "ngrok": "ngrok", "tailscale": "tailscale"}
    given = table.get("binaries", {})
    if not isinstance(given, dict) or not set(given) <= set(binaries):
        raise ConfigError("tunnels.binaries may set cloudflared, ngrok, tailscale")
    binaries.update({k: str(v) for k, v in given.items()})
    return TunnelsConfig(
        allow=allow_list,
        health_interval_s=_number(table, "health_interval_s", 10.0, low=0.05, high=3600),
        backoff_base_s=_number(table, "backoff_base_s", 1.0, low=0.01, high=600),
        backoff_max_s=_number(table, "backoff_max_s", 60.0, low=0.01, high=3600),
        stable_after_s=_number(table, "stable_after_s", 60.0, low=0, high=86400),
        listen_host=str(table.get("listen_host", "127.0.0.1")),
        listen_ports=_ports(table.get("listen_ports", {}), "tunnels.listen_ports"),
        binaries=binaries,
        tailscale_socket=table.get("tailscale_socket"),
        tailscale_funnel=bool(table.get("tailscale_funnel", False)),
        relay=_relay(table["relay"], state_dir) if "relay" in table else None,
        event_retention_days=int(_number(table, "event_retention_days", 30, low=1, high=3650)),
    )


def load_config(state_dir: Path) -> TunnelsConfig:
    """Read ``agent.toml`` from the state dir (defaults when it is absent)."""
    path = state_dir / CONFIG_FILE
    try:
        document = tomllib.loads(path.read_text())
    except FileNotFoundError:
        return TunnelsConfig()
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path.name}: {error}") from None
    return parse_config(document, state_dir)
