"""Request units per API operation, through the real handlers on moto, counted by CapacityMeter.

The meter is checked in the same run against two calls whose cost AWS documents: a bare PutItem
of a 100-byte item (1 WCU) and an eventually consistent GetItem of it (0.5 RCU); every operation is
also shown as a ratio to them. Then what moto itself reports in ConsumedCapacity, per operation
and item size, beside the AWS rules; last, a search for Scan calls in src/ and functions/.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _support import ROOT, TABLE, BenchAgent, Stack, header, local_stack, save_results
from capacity import CallRecord, CapacityMeter, Measurement, item_size

LIST_AGENTS = 60
PAGE = 50
STEADY_HEARTBEATS = 5
PROBE_SIZES = (500, 1500, 5000)
HEARTBEAT_GOAL = "1 write unit and no GSI write"
LABEL = 42


def probe_item(size: int, name: str = "PROBE") -> dict[str, Any]:
    """An item of exactly ``size`` bytes by the AWS formula."""
    item: dict[str, Any] = {"pk": {"S": f"{name}#{size}"}, "sk": {"S": "#"}, "payload": {"S": ""}}
    item["payload"]["S"] = "x" * (size - item_size(item))
    assert item_size(item) == size
    return item


def measure(meter: CapacityMeter, label: str, action: Callable[[], Any]) -> Measurement:
    with meter.measure(label) as measurement:
        action()
    return measurement


def row(label: str, m: Measurement, put: Measurement, get: Measurement) -> str:
    """One table line; RCU/get and WCU/put are ratios to the bare GetItem and PutItem baselines."""
    ops = ", ".join(m.operations())
    return (
        f"  {label:{LABEL}} {m.rcu:5.1f} {m.wcu:5.1f} {m.gsi_wcu:7.1f} {len(m.calls):5d}"
        f" {m.rcu / get.rcu:7.1f}x {m.wcu / put.wcu:7.1f}x {m.reported:6.1f}   {ops}"
    )


def call_text(call: CallRecord) -> str:
    """One call's cost, e.g. ``TransactWriteItems 12 WCU + 1 GSI WCU``."""
    parts = [f"{call.rcu:g} RCU"] if call.rcu else []
    parts += [f"{call.gsi_rcu:g} RCU on an index"] if call.gsi_rcu else []
    parts += [f"{call.wcu:g} WCU"] if call.wcu else []
    parts += [f"{call.gsi_wcu:g} GSI WCU"] if call.gsi_wcu else []
    failed = f" ({call.error})" if call.error else ""
    return f"{call.operation}{failed} " + " + ".join(parts or ["0"])


def self_check(meter: CapacityMeter, client: Any) -> tuple[Measurement, Measurement]:
    item = probe_item(100, "BASELINE")
    put = measure(meter, "bare PutItem", lambda: client.put_item(TableName=TABLE, Item=item))
    key = {"pk": item["pk"], "sk": item["sk"]}
    get = measure(meter, "bare GetItem", lambda: client.get_item(TableName=TABLE, Key=key))
    return put, get


def operations(meter: CapacityMeter, stack: Stack) -> dict[str, Measurement]:
    results: dict[str, Measurement] = {}
    tokens: list[str] = []
    results["token mint (POST /v1/registration-tokens)"] = measure(
        meter, "mint", lambda: tokens.append(stack.mint_token(max_uses=LIST_AGENTS + 5))
    )
    (token,) = tokens
    agents = [BenchAgent(i) for i in range(LIST_AGENTS)]
    first = agents[0]
    results["registration, new"] = measure(meter, "register", lambda: stack.register(first, token))
    results["re-registration (same key, no token)"] = measure(
        meter, "re-register", lambda: stack.register(first, None)
    )
    results["heartbeat, first"] = measure(
        meter, "hb1", lambda: stack.invoke("heartbeat", first.heartbeat_event(0))
    )
    steady = [
        measure(meter, f"hb{i}", lambda i=i: stack.invoke("heartbeat", first.heartbeat_event(i)))
        for i in range(1, STEADY_HEARTBEATS + 1)
    ]
    distinct = {(m.rcu, m.wcu, m.gsi_wcu, tuple(m.operations())) for m in steady}
    same = "identical" if len(distinct) == 1 else "THEY VARY"
    label = f"heartbeat, steady (2nd-{STEADY_HEARTBEATS + 1}th: {same})"
    results[label] = max(steady, key=lambda m: (m.wcu + m.gsi_wcu, m.rcu))
    results["heartbeat, generic client (random nonce)"] = measure(
        meter, "hb-random", lambda: stack.invoke("heartbeat", first.heartbeat_event(0, sequenced=False))
    )
    replayed = first.heartbeat_event(STEADY_HEARTBEATS + 1)
    stack.invoke("heartbeat", replayed)
    results["heartbeat replayed (rejected, 401)"] = measure(
        meter, "replay", lambda: stack.invoke("heartbeat", replayed, expect=401)
    )
    for agent in agents[1:]:
        stack.register(agent, token)
        stack.invoke("heartbeat", agent.heartbeat_event(0))
    results["agent read (GET /v1/agents/{id})"] = measure(
        meter, "read", lambda: stack.operator("operator", "GET", f"/v1/agents/{first.agent_id}")
    )
    pages: list[dict[str, Any]] = []
    results[f"list page of {PAGE} (GET /v1/agents)"] = measure(
        meter,
        "list",
        lambda: pages.append(stack.operator("operator", "GET", "/v1/agents", query=f"limit={PAGE}")),
    )
    if len(pages[0]["items"]) != PAGE:
        print(f"  NOTE: the list page returned {len(pages[0]['items'])} agents, not {PAGE}")
    return results


def moto_vs_aws(meter: CapacityMeter, client: Any) -> None:
    header("What moto reports in ConsumedCapacity vs the AWS rules (raw boto3 calls, eventual reads)")
    print(f"  {'operation':20}" + "".join(f" {f'{size} B item':>22}" for size in PROBE_SIZES))
    print(f"  {'':20}" + "".join(f" {'moto':>10} {'AWS rule':>11}" for _ in PROBE_SIZES))
    results: dict[str, list[Measurement]] = {}
    for size in PROBE_SIZES:
        item = probe_item(size)
        key = {"pk": item["pk"], "sk": item["sk"]}
        twin = probe_item(size, "PROBETX")
        calls: dict[str, Callable[[], Any]] = {
            "PutItem (new)": lambda item=item: client.put_item(TableName=TABLE, Item=item),
            "GetItem": lambda key=key: client.get_item(TableName=TABLE, Key=key),
            "Query (1 item)": lambda item=item: client.query(
                TableName=TABLE,
                KeyConditionExpression="pk = :pk",
                ExpressionAttributeValues={":pk": item["pk"]},
            ),
            "UpdateItem (SET n)": lambda key=key: client.update_item(
                TableName=TABLE,
                Key=key,
                UpdateExpression="SET n = :n",
                ExpressionAttributeValues={":n": {"N": "1"}},
            ),
            "BatchGetItem (1 key)": lambda key=key: client.batch_get_item(
                RequestItems={TABLE: {"Keys": [key]}}
            ),
            "TransactWriteItems": lambda twin=twin: client.transact_write_items(
                TransactItems=[{"Put": {"TableName": TABLE, "Item": twin}}]
            ),
        }
        for label, call in calls.items():
            results.setdefault(label, []).append(measure(meter, label, call))
    for label, measurements in results.items():
        cells = ""
        for m in measurements:
            (call,) = m.calls
            reported = "absent" if call.reported is None else f"{call.reported:g}"
            if call.reported is not None and not call.reported_detail:
                reported = "[] (0)"
            computed = call.rcu + call.gsi_rcu if call.rcu or call.gsi_rcu else call.wcu
            unit = "RCU" if call.rcu or call.gsi_rcu else "WCU"
            cells += f" {reported:>10} {f'{computed:g} {unit}':>11}"
        print(f"  {label:20}{cells}")
    for text in (
        "moto's figures are constants per operation (PutItem and Query 1, GetItem and UpdateItem 0.5,",
        "BatchGetItem 1 per key, TransactWriteItems an empty list), whatever the item size or consistency;",
        "the meter's own numbers (AWS rules, from the item sizes) are the ones used above.",
    ):
        print(f"  {text}")


SCAN_CALL = re.compile(
    r"\.(scan|parallel_scan|rate_limited_scan)\s*\("
    r"|(_make_api_call|dispatch)\(\s*['\"]Scan['\"]"
    r"|\bScanCommand\b"
)


def scan_search() -> None:
    header("Scan anywhere? (grep of src/ and functions/ for Scan calls, plus what the meter saw)")
    hits = []
    for folder in ("src", "functions"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if SCAN_CALL.search(line):
                    hits.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    pattern = "'.scan(' / '.parallel_scan(' / '.rate_limited_scan(' / _make_api_call('Scan') / ScanCommand"
    print(f"  pattern: {pattern}")
    if hits:
        print("  Scan calls FOUND:")
        for hit in hits:
            print(f"    {hit}")
    else:
        print("  no Scan anywhere: no Scan call in src/ or functions/")


def main() -> None:
    with local_stack() as stack:
        meter = CapacityMeter(stack.client)
        put, get = self_check(meter, stack.client)
        results = operations(meter, stack)
        header("Request units per operation (AWS rules, computed from item sizes by CapacityMeter on moto)")
        columns = ("RCU", "WCU", "GSI WCU", "calls", "RCU/get", "WCU/put", "moto")
        widths = (5, 5, 7, 5, 8, 8, 6)
        print(
            f"  {'':{LABEL}}"
            + "".join(f" {name:>{w}}" for name, w in zip(columns, widths, strict=True))
            + "   calls made"
        )
        print(row("bare GetItem, 100 B (baseline)", get, put, get))
        print(row("bare PutItem, 100 B (baseline)", put, put, get))
        expected_ok = put.wcu == 1.0 and get.rcu == 0.5
        print(
            f"  meter self-check: PutItem {put.wcu:g} WCU (AWS: 1), GetItem {get.rcu:g} RCU (AWS: 0.5) -> "
            + ("ok" if expected_ok else "MISMATCH")
        )
        for label, measurement in results.items():
            print(row(label, measurement, put, get))
        steady = next(m for label, m in results.items() if label.startswith("heartbeat, steady"))
        meets = steady.wcu <= 1 and steady.gsi_wcu == 0
        print(
            f"  heartbeat goal ({HEARTBEAT_GOAL}): steady heartbeat = {steady.wcu:g} WCU"
            f" ({steady.wcu / put.wcu:g}x the bare PutItem), {steady.gsi_wcu:g} GSI WCU -> "
            + ("MEETS the goal" if meets else "MISSES the goal")
        )
        generic = results["heartbeat, generic client (random nonce)"]
        save_results(
            "heartbeat_units",
            {
                "sequenced": {"rcu": steady.rcu, "wcu": steady.wcu, "gsi_wcu": steady.gsi_wcu},
                "random_nonce": {"rcu": generic.rcu, "wcu": generic.wcu, "gsi_wcu": generic.gsi_wcu},
                "sequenced_calls": steady.operations(),
                "random_nonce_calls": generic.operations(),
            },
        )
        header("Per call")
        for label, measurement in results.items():
            print(f"  {label}:\n      " + " | ".join(call_text(call) for call in measurement.calls))
        moto_vs_aws(meter, stack.client)
        scans = [call for call in meter.history if call.operation == "Scan"]
        scan_search()
        print(f"  Scan calls the meter saw during this run: {len(scans)}")


if __name__ == "__main__":
    main()
