"""The monthly bill of an idle fleet, from the figures the benchmarks measured (bench/results/*.json).

Run the benchmarks first (bench_capacity.py, bench_log_bytes.py, bench_durations.py), then this: it
prints every table of docs/cost.md, so the doc can be checked against it. Lines for other
capabilities are read from ``bench/results/<name>_cost.json`` when their benchmark wrote one
(see ``EXTRA_LINES``), in this shape, per agent per month::

    {"label": "tunnels: ...", "per_agent_month": {"api_requests": 0, "lambda_invocations": 0,
     "lambda_gb_s": 0, "wru": 0, "rru": 0, "log_bytes": 0}, "basis": {...}}

``basis`` holds the measured per-request figures the month was multiplied from (``cost_line``
writes both), so every line traces back to a benchmark.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _support import RESULTS_DIR, header
from fleetlink.api.functions import function_spec

#: AWS list prices, us-east-1, as this project knew them in November 2025 (no free tier, no savings
#: plans, no tax). Prices change: re-check them; the unit counts stay right.
PRICES_AS_OF = "2025-11 (us-east-1 list prices)"
API_PER_M_FIRST_300M = 1.00
API_PER_M_AFTER = 0.90
LAMBDA_PER_M_REQUESTS = 0.20
LAMBDA_ARM_PER_GB_S = 0.0000133334
DYNAMO_PER_M_WRU = 0.625
DYNAMO_PER_M_RRU = 0.125
LOGS_PER_GB = 0.50
XRAY_PER_M_TRACES = 5.00
STORAGE_PER_GB_MONTH = 0.25 + 0.20  # table storage + PITR
FIXED_PER_MONTH = 1.00 + 13 * 0.10 + 3.00  # table key, 13 alarms, dashboard
IOT_PER_M_CONNECTION_MINUTES = 0.08
IOT_PER_M_MESSAGES = 1.00  # the first billion a month
IOT_PER_M_MESSAGES_AFTER_1B = 0.80  # the next four billion
IOT_PER_M_SHADOW_OPS = 1.25
SSM_ADVANCED_PER_NODE_HOUR = 0.00695
SSM_STANDARD_MAX_NODES = 1000

MONTH_S = 30 * 24 * 3600
INTERVALS_S = (30, 60, 120)
FLEETS = (1_000, 10_000, 100_000)
#: Bytes an agent's items keep in the table (profile, presence, tag members, registration history).
BYTES_PER_AGENT = 3_800
#: The cleanup schedules, one per duty of the registry (lease expiry and fan-outs every minute,
#: delivery expiry every 5), each run 8 empty gsi4 Queries when idle.
CLEANUP_RUNS_PER_MONTH = sum(MONTH_S // (duty.every_minutes * 60) for duty in function_spec("cleanup").duties)
CLEANUP_RRU_PER_RUN = 8 * 0.5
GOAL = 0.11
#: Other capabilities' idle cost per agent, each from its benchmark's results file when present.
EXTRA_LINES = ("tunnels", "relay")


@dataclass(frozen=True)
class Heartbeat:
    """What one idle heartbeat costs in units."""

    label: str
    wru: float
    rru: float
    memory_mb: int
    billed_ms: int
    log_bytes: float
    traced: bool


def load(name: str) -> dict[str, Any]:
    path = RESULTS_DIR / f"{name}.json"
    if not path.is_file():
        raise SystemExit(f"{path} is missing: run bench/bench_{name.split('_')[0]}*.py first")
    figures: dict[str, Any] = json.loads(path.read_text())
    return figures


def heartbeats() -> tuple[Heartbeat, Heartbeat]:
    """(before, after): a random-nonce heartbeat at 512 MB with text logs and X-Ray on; a sequenced
    heartbeat at the registry's memory with JSON WARN logs, the compact access log and no trace."""
    from fleetlink.api.functions import FUNCTIONS

    units, logs, durations = load("heartbeat_units"), load("log_bytes"), load("durations")
    timing = durations["functions"]["heartbeat"]["duration_s"]
    memory = FUNCTIONS["heartbeat"].memory_mb or 512
    before = Heartbeat(
        "before",
        units["random_nonce"]["wcu"],
        units["random_nonce"]["rcu"],
        512,
        math.ceil(timing["512"] * 1000),
        logs["before_bytes_per_heartbeat"],
        traced=True,
    )
    after = Heartbeat(
        "after",
        units["sequenced"]["wcu"],
        units["sequenced"]["rcu"],
        memory,
        math.ceil(timing[str(memory)] * 1000),
        logs["after_bytes_per_heartbeat"],
        traced=False,
    )
    return before, after


def cost_line(
    name: str, label: str, *, function: str, requests_per_month: float, rru: float, wru: float
) -> dict[str, Any]:
    """A capability's line from its measured units per request (``wru`` counts index writes too),
    the function's modelled duration at its registry memory (durations.json) and the compact access
    log line (log_bytes.json); written to ``bench/results/<name>_cost.json`` and returned."""
    from _support import save_results
    from fleetlink.api.functions import FUNCTIONS

    memory = FUNCTIONS[function].memory_mb or 512  # none named: the stage default, lambda_memory_mb
    duration_s = load("durations")["functions"][function]["duration_s"][str(memory)]
    billed_ms = math.ceil(duration_s * 1000)
    log_bytes = load("log_bytes")["after_bytes_per_heartbeat"]
    n = requests_per_month
    figures = {
        "label": label,
        "per_agent_month": {
            "api_requests": n,
            "lambda_invocations": n,
            "lambda_gb_s": n * memory / 1024 * billed_ms / 1000,
            "wru": n * wru,
            "rru": n * rru,
            "log_bytes": n * log_bytes,
        },
        "basis": {
            "requests_per_month": n,
            "function": function,
            "memory_mb": memory,
            "billed_ms": billed_ms,
            "wru_per_request": wru,
            "rru_per_request": rru,
            "log_bytes_per_request": log_bytes,
        },
    }
    save_results(f"{name}_cost", figures)
    return figures


def api_cost(requests: float) -> float:
    first = min(requests, 300e6)
    return first / 1e6 * API_PER_M_FIRST_300M + (requests - first) / 1e6 * API_PER_M_AFTER


def xray_traces(agents: int, interval_s: int) -> float:
    """Lambda's fixed sampling: the first request each second and 5 % of the rest."""
    rate = agents / interval_s
    return (min(rate, 1.0) + 0.05 * max(rate - 1.0, 0.0)) * MONTH_S


def iot_messages_cost(messages: float) -> float:
    first = min(messages, 1e9)
    return first / 1e6 * IOT_PER_M_MESSAGES + (messages - first) / 1e6 * IOT_PER_M_MESSAGES_AFTER_1B


def extra_figures() -> dict[str, dict[str, Any] | None]:
    """Each capability's results file as written by ``cost_line``, or None when not measured."""
    found: dict[str, dict[str, Any] | None] = {}
    for name in EXTRA_LINES:
        path = RESULTS_DIR / f"{name}_cost.json"
        found[name] = json.loads(path.read_text()) if path.is_file() else None
    return found


def extra_lines() -> dict[str, dict[str, float] | None]:
    return {name: None if f is None else f["per_agent_month"] for name, f in extra_figures().items()}


def bill(beat: Heartbeat, agents: int, interval_s: int) -> dict[str, float]:
    """Every line of the month's bill for an idle fleet."""
    n = agents * MONTH_S / interval_s
    gb_s = n * beat.memory_mb / 1024 * beat.billed_ms / 1000
    lines = {
        "API Gateway": api_cost(n),
        "Lambda requests": n / 1e6 * LAMBDA_PER_M_REQUESTS,
        "Lambda duration": gb_s * LAMBDA_ARM_PER_GB_S,
        "DynamoDB writes": n * beat.wru / 1e6 * DYNAMO_PER_M_WRU,
        "DynamoDB reads": n * beat.rru / 1e6 * DYNAMO_PER_M_RRU,
        "CloudWatch Logs": n * beat.log_bytes / 1e9 * LOGS_PER_GB,
        "X-Ray": xray_traces(agents, interval_s) / 1e6 * XRAY_PER_M_TRACES if beat.traced else 0.0,
        "storage + PITR": agents * BYTES_PER_AGENT / 1e9 * STORAGE_PER_GB_MONTH,
        "cleanup schedules": CLEANUP_RUNS_PER_MONTH
        * (LAMBDA_PER_M_REQUESTS / 1e6 + CLEANUP_RRU_PER_RUN * DYNAMO_PER_M_RRU / 1e6),
        "fixed (key, alarms, dashboard)": FIXED_PER_MONTH,
    }
    for name, per_agent in extra_lines().items():
        if per_agent is not None:
            lines[name] = agents * (
                api_cost(per_agent["api_requests"])
                + per_agent["lambda_invocations"] / 1e6 * LAMBDA_PER_M_REQUESTS
                + per_agent["lambda_gb_s"] * LAMBDA_ARM_PER_GB_S
                + per_agent["wru"] / 1e6 * DYNAMO_PER_M_WRU
                + per_agent["rru"] / 1e6 * DYNAMO_PER_M_RRU
                + per_agent["log_bytes"] / 1e9 * LOGS_PER_GB
            )
    return lines


def money(value: float) -> str:
    return f"${value:,.2f}"


def main() -> None:
    before, after = heartbeats()
    print(f"prices: {PRICES_AS_OF}; a 30-day month; idle fleet (heartbeats only)")
    header("One idle heartbeat (measured: bench/results/*.json)")
    print(f"  {'':8} {'WRU':>5} {'RRU':>5} {'memory':>7} {'billed':>7} {'log bytes':>9} {'traced':>7}")
    for beat in (before, after):
        print(
            f"  {beat.label:8} {beat.wru:5g} {beat.rru:5g} {beat.memory_mb:5d}MB {beat.billed_ms:5d}ms"
            f" {beat.log_bytes:9.0f} {'sampled' if beat.traced else 'no':>7}"
        )
    for name, figures in extra_figures().items():
        if figures is None:
            print(f"  {name} line: not measured yet (no bench/results/{name}_cost.json)")
            continue
        basis = figures["basis"]
        print(
            f"  {name} line: {figures['label']}; per request {basis['wru_per_request']:g} WRU"
            f" {basis['rru_per_request']:g} RRU, {basis['memory_mb']} MB x {basis['billed_ms']} ms,"
            f" {basis['log_bytes_per_request']:.0f} log bytes; {basis['requests_per_month']:g} requests"
            " per agent-month"
        )

    header("Monthly bill at a 60 s heartbeat, after")
    names = list(bill(after, FLEETS[0], 60))
    print(f"  {'':32}" + "".join(f" {f'{agents:,} agents':>16}" for agents in FLEETS))
    bills = {agents: bill(after, agents, 60) for agents in FLEETS}
    for name in names:
        print(f"  {name:32}" + "".join(f" {money(bills[a][name]):>16}" for a in FLEETS))
    print(f"  {'total':32}" + "".join(f" {money(sum(bills[a].values())):>16}" for a in FLEETS))
    print(f"  {'per agent':32}" + "".join(f" {f'${sum(bills[a].values()) / a:.4f}':>16}" for a in FLEETS))

    header("Per agent-month by heartbeat interval (before -> after)")
    print(f"  {'interval':10}" + "".join(f" {f'{agents:,} agents':>22}" for agents in FLEETS))
    for interval in INTERVALS_S:
        cells = []
        for agents in FLEETS:
            old = sum(bill(before, agents, interval).values()) / agents
            new = sum(bill(after, agents, interval).values()) / agents
            cells.append(f"${old:.4f} -> ${new:.4f}")
        print(f"  {f'{interval} s':10}" + "".join(f" {cell:>22}" for cell in cells))
    at_goal = sum(bill(after, 10_000, 60).values()) / 10_000
    verdict = "meets" if at_goal <= GOAL else "MISSES"
    print(f"  goal: <= ${GOAL} per agent-month at 60 s, 10,000 agents: ${at_goal:.4f} ({verdict})")

    header("The same idle fleet on AWS IoT Core or Systems Manager (per month, 60 s status)")
    minutes = MONTH_S / 60
    for agents in FLEETS:
        connect = agents * minutes / 1e6 * IOT_PER_M_CONNECTION_MINUTES
        status = iot_messages_cost(agents * minutes) + agents * minutes / 1e6 * IOT_PER_M_SHADOW_OPS
        advanced = agents > SSM_STANDARD_MAX_NODES
        ssm = agents * SSM_ADVANCED_PER_NODE_HOUR * MONTH_S / 3600 if advanced else 0.0
        ours = sum(bill(after, agents, 60).values())
        print(
            f"  {agents:>7,} agents: fleetlink {money(ours)}; IoT Core connection only {money(connect)},"
            f" with a status message + shadow update a minute {money(connect + status)};"
            f" Systems Manager {money(ssm)}"
        )


if __name__ == "__main__":
    main()
