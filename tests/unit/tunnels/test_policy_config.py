"""The allow list, the [tunnels] part of agent.toml, and the restart backoff."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleetlink.agent.tunnels.config import ConfigError, load_config
from fleetlink.agent.tunnels.policy import AllowList
from fleetlink.client.backoff import Backoff


@pytest.mark.parametrize("target", ["127.0.0.1:80", "127.9.9.9:22", "[::1]:8080", "localhost:3000"])
def test_default_allow_list_takes_loopback(target: str) -> None:
    """Given the default allow list; then loopback targets (and names resolving only to loopback) pass."""
    assert AllowList.parse(["127.0.0.0/8", "::1/128"]).refusal(target) is None


@pytest.mark.parametrize("target", ["10.0.0.5:22", "192.168.1.1:80", "169.254.169.254:80", "[fe80::1]:80"])
def test_default_allow_list_refuses_the_network(target: str) -> None:
    """Given the default allow list; then a LAN or metadata address is refused, and the reason names it."""
    reason = AllowList.parse(["127.0.0.0/8", "::1/128"]).refusal(target)
    assert reason is not None
    assert "outside this agent's allow list" in reason


def test_listed_networks_and_names_are_allowed() -> None:
    """Given an allow list with a LAN network and a host name; then both pass."""
    allow = AllowList.parse(["10.0.0.0/24", "nas.internal"])
    assert allow.refusal("10.0.0.7:445") is None
    assert allow.refusal("NAS.internal:80") is None
    assert allow.refusal("10.0.1.7:445") is not None


def test_config_file_sets_the_allow_list_and_relay(tmp_path: Path) -> None:
    """Given an agent.toml with a [tunnels] table; then its values are read (paths relative to the
    state dir), other sections ignored."""
    (tmp_path / "agent.toml").write_text(
        '[heartbeat]\ninterval = 5\n\n[tunnels]\nallow = ["127.0.0.0/8", "10.1.0.0/16"]\n'
        "health_interval_s = 5\n"
        '[tunnels.relay]\nhost = "relay.example.com"\nuser = "fl"\nidentity_file = "relay_key"\n'
        'known_hosts = "relay_known_hosts"\n[tunnels.relay.ports]\nweb = 18080\n'
    )
    config = load_config(tmp_path)
    assert config.allow.refusal("10.1.2.3:80") is None
    assert config.health_interval_s == 5
    assert config.relay is not None
    assert config.relay.identity_file == tmp_path / "relay_key"
    assert config.relay.ports == {"web": 18080}


def test_missing_config_means_defaults(tmp_path: Path) -> None:
    """Given no agent.toml; then the loopback-only defaults apply."""
    assert load_config(tmp_path).allow.refusal("10.0.0.1:80") is not None


@pytest.mark.parametrize(
    "text",
    [
        '[tunnels]\nallow = "everything"',
        '[tunnels]\nallow = ["not a cidr/x"]',
        "[tunnels]\nhealth_interval_s = -1",
        '[tunnels.relay]\nhost = "h"',
        "not toml [",
    ],
)
def test_bad_config_is_a_clear_error(tmp_path: Path, text: str) -> None:
    """Given a wrong value in agent.toml; then loading fails with a ConfigError naming it."""
    (tmp_path / "agent.toml").write_text(text)
    with pytest.raises(ConfigError):
        load_config(tmp_path)


def test_backoff_grows_exponentially_with_full_jitter_under_the_cap() -> None:
    """Given attempts 1..10 with base 1 s and cap 30 s; then each delay is in [0, d] with
    d = min(30, 2^(n-1)): the jitter's draw times the ceiling."""
    for attempt in range(1, 11):
        full = min(30.0, 2.0 ** (attempt - 1))
        assert Backoff(1.0, 30.0, rand=lambda: 0.0).delay_s(attempt) == 0.0
        assert Backoff(1.0, 30.0, rand=lambda: 0.25).delay_s(attempt) == full / 4
        assert Backoff(1.0, 30.0, rand=lambda: 1.0).delay_s(attempt) == full


def test_a_retry_after_is_a_floor_under_the_jitter_and_is_capped() -> None:
    # Given a jitter that draws low, and one that draws high
    low, high = Backoff(1.0, 30.0, rand=lambda: 0.0), Backoff(1.0, 30.0, rand=lambda: 1.0)
    # Then a server's Retry-After is waited at least, a longer jittered delay wins, a huge hint is capped
    assert low.delay_s(1, retry_after_s=7.0) == 7.0
    assert high.delay_s(6, retry_after_s=7.0) == 30.0
    assert Backoff(1.0, 30.0, max_retry_after_s=120.0, rand=lambda: 0.0).delay_s(1, 86_400.0) == 120.0
