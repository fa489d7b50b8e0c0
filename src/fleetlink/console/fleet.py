"""What the console shows, read through the operator's client: pure shaping of API answers.

Nothing here knows HTTP or templates; ``app.py`` renders what these functions return.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from fleetlink.contract.agents import AgentSummary
from fleetlink.core.roles import Role

#: Agents the overview reads at most (100 a page).
MAX_AGENTS = 2000
LIVENESS_ORDER = ("online", "connection_lost", "never_seen", "revoked")


def liveness_of(agent: AgentSummary) -> str:
    return "revoked" if agent.state.value == "revoked" else agent.liveness.value


@dataclass(frozen=True)
class Overview:
    agents: list[AgentSummary]
    by_liveness: dict[str, int]
    by_version: dict[str, int]
    by_tag: dict[str, int]


def overview(agents: Iterable[AgentSummary]) -> Overview:
    """Counts by liveness, by agent version and by tag (``key=value``)."""
    listed = list(agents)
    liveness = Counter(liveness_of(agent) for agent in listed)
    versions = Counter(agent.agent_version or "unknown" for agent in listed)
    tags = Counter(f"{key}={value}" for agent in listed for key, value in agent.tags.items())
    return Overview(
        agents=sorted(listed, key=lambda a: (LIVENESS_ORDER.index(liveness_of(a)), a.name)),
        by_liveness={name: liveness[name] for name in LIVENESS_ORDER},
        by_version=dict(sorted(versions.items())),
        by_tag=dict(sorted(tags.items(), key=lambda kv: (-kv[1], kv[0]))),
    )


@dataclass
class LivenessHistory:
    """Fleet liveness sampled by the console while it runs (the API keeps no history of it)."""

    every_s: float
    keep: int = 360
    samples: deque[tuple[float, dict[str, int]]] = field(default_factory=deque)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, counts: Mapping[str, int], at: float | None = None) -> None:
        with self._lock:
            self.samples.append((at if at is not None else time.time(), dict(counts)))
            while len(self.samples) > self.keep:
                self.samples.popleft()

    def snapshot(self) -> list[tuple[float, dict[str, int]]]:
        with self._lock:
            return list(self.samples)

    def run(self, sample: Callable[[], Mapping[str, int]], stop: threading.Event) -> None:
        """Sample until ``stop`` (a failed read skips one sample)."""
        while not stop.is_set():
            try:
                self.record(sample())
            except Exception as error:  # the API being away is shown by the pages themselves
                logging.getLogger(__name__).debug("liveness sample skipped: %s", error)
            stop.wait(self.every_s)


def chart(samples: list[tuple[float, dict[str, int]]], width: int = 600, height: int = 140) -> dict[str, Any]:
    """Stacked-line points (SVG polyline coordinates) per liveness, scaled to the box."""
    if not samples:
        return {"series": [], "width": width, "height": height, "max": 0, "span_s": 0}
    peak = max(max(sum(counts.values()) for _, counts in samples), 1)
    start, end = samples[0][0], samples[-1][0]
    span = max(end - start, 1e-9)
    series = []
    for name in LIVENESS_ORDER:
        points = []
        for at, counts in samples:
            x = 0 if len(samples) == 1 else (at - start) / span * width
            y = height - counts.get(name, 0) / peak * (height - 4) - 2
            points.append(f"{x:.1f},{y:.1f}")
        series.append({"name": name, "points": " ".join(points), "last": samples[-1][1].get(name, 0)})
    return {"series": series, "width": width, "height": height, "max": peak, "span_s": int(end - start)}


@dataclass(frozen=True)
class Permissions:
    """What the caller may do: its role and each operator route's least role (from ``/v1/whoami``).

    ``role`` None (a deployed stack: IAM decides) shows every control; the API refuses what IAM does not
    allow, and the page shows that refusal.
    """

    role: Role | None
    routes: Mapping[str, Role]

    def can(self, route: str) -> bool:
        """``route``: ``METHOD /v1/path`` as the OpenAPI document writes it."""
        needed = self.routes.get(route)
        if needed is None:
            return False
        return self.role is None or self.role.allows(needed)


def parse_pairs(text: str) -> dict[str, str]:
    """``k=v`` pairs separated by commas or spaces; a ValueError naming the bad one."""
    pairs: dict[str, str] = {}
    for part in text.replace(",", " ").split():
        key, sep, value = part.partition("=")
        if not sep or not key:
            raise ValueError(f"{part!r}: write key=value")
        pairs[key] = value
    return pairs


def parse_ids(text: str) -> list[str]:
    return [part for part in text.replace(",", " ").split() if part]
