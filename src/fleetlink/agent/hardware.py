"""This machine's hardware as the agent reports it, and its fingerprint.

Collection only reads local files and the local resolver; it never opens a network connection.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import platform
import socket
import uuid
from pathlib import Path

from fleetlink.agent.identity import IdentityError, resolve_state_dir
from fleetlink.auth.files import write_private_file
from fleetlink.core.entities import Hardware

MACHINE_ID_FILES = (Path("/etc/machine-id"), Path("/var/lib/dbus/machine-id"))
PRODUCT_UUID_FILE = Path("/sys/class/dmi/id/product_uuid")
CPUINFO_FILE = Path("/proc/cpuinfo")
MEMINFO_FILE = Path("/proc/meminfo")
#: Where the fallback machine id lives in the state dir when the OS has none.
FALLBACK_MACHINE_ID_FILE = "machine-id"

#: The fields the fingerprint covers: ones that stay put across reboots, renames and re-addressing.
FINGERPRINT_FIELDS = ("machine_id", "product_uuid", "mac_address", "cpu_model", "arch")

_MULTICAST_BIT = 1 << 40


def _read(path: Path) -> str:
    """A small system file's stripped text, or "" if it is missing or unreadable."""
    try:
        return path.read_text(errors="replace").strip()
    except OSError:
        return ""


def _clip(value: str, limit: int) -> str:
    return value.strip()[:limit]


def machine_id(state_dir: str | os.PathLike[str] | None = None) -> str:
    """FLEETLINK_MACHINE_ID, else the OS machine id, else a random UUID kept in the state dir.

    Containers cloned from one image share /etc/machine-id; set FLEETLINK_MACHINE_ID per container.
    """
    override = os.environ.get("FLEETLINK_MACHINE_ID", "").strip()
    if override:
        return _clip(override, 256)
    for path in MACHINE_ID_FILES:
        value = _read(path)
        if value:
            return _clip(value, 256)
    directory = resolve_state_dir(state_dir)
    path = directory / FALLBACK_MACHINE_ID_FILE
    value = _read(path)
    if not value:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_private_file(path, f"{uuid.uuid4()}\n".encode())
        value = _read(path)
    if not value:
        raise IdentityError(f"cannot read or create a machine id in {path}")
    return value


def _ip_address(hostname: str) -> str:
    """The IPv4 address the hostname resolves to, preferring a non-loopback one, or "".

    Name resolution only (hosts file, local resolver): no connection is opened.
    """
    try:
        infos = socket.getaddrinfo(hostname, None, socket.AF_INET, socket.SOCK_STREAM)
    except OSError:
        infos = []
    addresses = [str(info[4][0]) for info in infos]
    for address in addresses:
        if not ipaddress.ip_address(address).is_loopback:
            return address
    try:
        return socket.gethostbyname(hostname)
    except OSError:
        return addresses[0] if addresses else ""


def _mac_address() -> str:
    """The primary MAC as aa:bb:..., or "" when uuid.getnode() had to make one up (it changes per run)."""
    node = uuid.getnode()
    if node & _MULTICAST_BIT:
        return ""
    return ":".join(f"{(node >> shift) & 0xFF:02x}" for shift in range(40, -1, -8))


def _cpu_model() -> str:
    """The CPU model from /proc/cpuinfo (x86 "model name", or ARM's "Hardware"/"Processor"), else platform."""
    wanted = ("model name", "hardware", "processor", "cpu model")
    found: dict[str, str] = {}
    for line in _read(CPUINFO_FILE).splitlines():
        name, sep, value = line.partition(":")
        name, value = name.strip().lower(), value.strip()
        # x86 "processor" lines are just indexes: skip pure numbers.
        if sep and value and name in wanted and name not in found and not value.isdigit():
            found[name] = value
    for name in wanted:
        if name in found:
            return _clip(found[name], 256)
    return _clip(platform.processor(), 256)


def _memory_mb() -> int | None:
    for line in _read(MEMINFO_FILE).splitlines():
        if line.startswith("MemTotal:"):
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                return int(parts[1]) // 1024
    return None


def collect_hardware(state_dir: str | os.PathLike[str] | None = None) -> Hardware:
    """This machine's Hardware: the core fields plus cpu_model, cpu_count, memory_mb, product_uuid when known.

    ``state_dir`` is only used when the OS has no machine id (see :func:`machine_id`).
    """
    hostname = _clip(socket.gethostname(), 256) or "localhost"
    extra: dict[str, str | int] = {}
    cpu_model = _cpu_model()
    if cpu_model:
        extra["cpu_model"] = cpu_model
    cpu_count = os.cpu_count()
    if cpu_count:
        extra["cpu_count"] = cpu_count
    memory_mb = _memory_mb()
    if memory_mb:
        extra["memory_mb"] = memory_mb
    product_uuid = _clip(_read(PRODUCT_UUID_FILE), 256)
    if product_uuid:
        extra["product_uuid"] = product_uuid.lower()
    return Hardware(
        machine_id=machine_id(state_dir),
        hostname=hostname,
        ip_address=_clip(_ip_address(hostname), 64),
        mac_address=_mac_address(),
        os=_clip(f"{platform.system()} {platform.release()}", 128),
        arch=_clip(platform.machine(), 32),
        **extra,
    )


def fingerprint(hardware: Hardware) -> str:
    """SHA-256 hex of the stable hardware fields (``FINGERPRINT_FIELDS``).

    The input is the canonical JSON object ``{field: value}`` over exactly those fields, sorted by
    name, each value stripped and lower-cased and "" when not reported; so hostname, IP address,
    OS release or memory changes keep the fingerprint, a new machine id or MAC changes it.
    """
    fields = hardware.fields()
    canonical = {name: fields.get(name, "") for name in FINGERPRINT_FIELDS}
    data = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(data.encode()).hexdigest()
