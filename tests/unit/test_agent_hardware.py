"""The agent's view of its machine: hardware collection and the fingerprint."""

from __future__ import annotations

import re
import socket
import uuid
from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter

from fleetlink.agent import hardware as hw
from fleetlink.agent.hardware import collect_hardware, fingerprint
from fleetlink.core.agents.commands import Fingerprint
from fleetlink.core.entities import Hardware


def machine(**changes: Any) -> Hardware:
    fields: dict[str, Any] = {
        "machine_id": "0f3c5d2e9a7b4c1d8e6f5a4b3c2d1e0f",
        "hostname": "edge-7.example.internal",
        "ip_address": "10.0.0.7",
        "mac_address": "02:00:00:00:00:07",
        "os": "Linux 6.8.0",
        "arch": "x86_64",
        "cpu_model": "Intel(R) Xeon(R) Processor",
        "cpu_count": 4,
        "memory_mb": 8192,
        "product_uuid": "4c4c4544-0031-3210-8052-b2c04f4e4a31",
    }
    return Hardware(**{**fields, **changes})


def test_fingerprint_is_stable_for_the_same_hardware() -> None:
    # Given the same machine described twice / When fingerprinted / Then the fingerprints are equal
    assert fingerprint(machine()) == fingerprint(machine())


def test_fingerprint_is_a_sha256_hex_the_api_accepts() -> None:
    # When a machine is fingerprinted / Then it is 64 lower-case hex characters, a valid API fingerprint
    value = fingerprint(machine())
    assert re.fullmatch(r"[0-9a-f]{64}", value)
    assert TypeAdapter(Fingerprint).validate_python(value) == value


def test_fingerprint_changes_when_the_machine_id_changes() -> None:
    # Given a machine whose machine id is different / Then its fingerprint differs
    assert fingerprint(machine(machine_id="another-machine-id-0001")) != fingerprint(machine())


def test_fingerprint_ignores_fields_that_move_on_a_healthy_machine() -> None:
    # Given the same machine renamed, re-addressed, upgraded and with more memory
    moved = machine(hostname="renamed", ip_address="10.9.9.9", os="Linux 6.9.1", memory_mb=16384)
    # Then its fingerprint is unchanged
    assert fingerprint(moved) == fingerprint(machine())


def test_collected_hardware_is_valid_on_this_machine(tmp_path: Path) -> None:
    # When this machine's hardware is collected
    collected = collect_hardware(tmp_path)
    # Then it is a valid Hardware with the identifying fields filled in, accepted in a registration
    assert isinstance(collected, Hardware)
    assert all((collected.machine_id, collected.hostname, collected.arch, collected.os))
    assert Hardware.model_validate(collected.model_dump()) == collected
    assert re.fullmatch(r"[0-9a-f]{64}", fingerprint(collected))


def test_collecting_hardware_twice_gives_the_same_fingerprint(tmp_path: Path) -> None:
    # When the hardware is collected twice / Then the fingerprint is the same (no random parts)
    assert fingerprint(collect_hardware(tmp_path)) == fingerprint(collect_hardware(tmp_path))


def test_without_an_os_machine_id_a_stable_one_is_kept_in_the_state_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a machine with neither /etc/machine-id nor the dbus one
    monkeypatch.setattr(hw, "MACHINE_ID_FILES", (tmp_path / "missing-1", tmp_path / "missing-2"))
    state = tmp_path / "state"
    # When the machine id is read twice
    first, second = hw.machine_id(state), hw.machine_id(state)
    # Then a UUID is created once in the state dir (0600) and reused
    assert first == second == (state / hw.FALLBACK_MACHINE_ID_FILE).read_text().strip()
    assert len(first) == 36
    assert (state / hw.FALLBACK_MACHINE_ID_FILE).stat().st_mode & 0o777 == 0o600


def test_a_made_up_mac_address_is_not_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given uuid.getnode() returning a random node (multicast bit set: it differs on every run)
    monkeypatch.setattr(uuid, "getnode", lambda: 0x03_00_00_00_00_01)
    # Then no MAC address is reported, so the fingerprint does not change between runs
    assert hw._mac_address() == ""


def test_a_real_mac_address_is_formatted_with_colons(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(uuid, "getnode", lambda: 0x02_1A_2B_3C_4D_5E)
    assert hw._mac_address() == "02:1a:2b:3c:4d:5e"


def test_collecting_hardware_opens_no_connection(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given sockets that fail the test if anything connects
    def refuse(*_: object) -> None:
        raise AssertionError("hardware collection must not open a connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    # When the hardware is collected / Then nothing connected
    assert collect_hardware(tmp_path).hostname


def test_machine_id_override_wins_over_the_os_one(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Given containers cloned from one image, told apart by FLEETLINK_MACHINE_ID
    monkeypatch.setenv("FLEETLINK_MACHINE_ID", "container-7")
    # When the machine id is read / Then the override is it
    assert hw.machine_id(tmp_path) == "container-7"
