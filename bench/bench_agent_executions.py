"""An agent's executions (gsi5): what the index costs each execution, and what a page of the console's
agent page costs to read.

Units: through the real handlers on moto, counted by CapacityMeter (AWS rules from item sizes). The
baseline is measured in the same run: the same execution life (create for one agent, claim, result)
on a table built without gsi5, and, for reads, the list the agent page used before (the 50 most
recent tasks, filtered by their targets).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _support import TABLE, BenchAgent, Stack, header, local_stack, save_results
from capacity import CapacityMeter, Measurement
from fleetlink.store.base import bind_table
from fleetlink.store.table import AGENT_EXECUTIONS_INDEX, create_table_request

WITHOUT_INDEX = f"{TABLE}-without-gsi5"
LIVES = 5
TASKS = 60


def signed(stack: Stack, agent: BenchAgent, path: str, body: Any) -> dict[str, Any]:
    assert agent.agent_id is not None
    event = agent.signed_event("POST", path, json.dumps(body).encode(), key_id=agent.agent_id)
    result: dict[str, Any] = json.loads(stack.invoke("tasks", event)["body"])
    return result


def life(stack: Stack, agent: BenchAgent) -> None:
    """One execution's life: created for the agent, claimed, reported."""
    stack.operator(
        "tasks", "POST", "/v1/tasks", {"command": "uptime", "targets": {"agent_ids": [agent.agent_id]}}
    )
    (lease,) = signed(stack, agent, f"/v1/agents/{agent.agent_id}/executions/claim", {"max": 1})["executions"]
    now = int(time.time() * 1000)
    result = {"attempt": 1, "status": "succeeded", "exit_code": 0, "output": "up 3 days\n"}
    signed(
        stack,
        agent,
        f"/v1/executions/{lease['execution_id']}/result",
        result | {"started_at": now, "finished_at": now},
    )


def lives(stack: Stack, meter: CapacityMeter, label: str) -> Measurement:
    agent = BenchAgent(len(label))
    stack.register(agent, stack.mint_token())
    with meter.measure(label) as measurement:
        for _ in range(LIVES):
            life(stack, agent)
    return measurement


def per_life(m: Measurement) -> dict[str, float]:
    return {"rcu": m.rcu / LIVES, "wcu": m.wcu / LIVES, "gsi_wcu": m.gsi_wcu / LIVES}


def main() -> None:
    figures: dict[str, Any] = {}
    with local_stack() as stack:
        meter = CapacityMeter(stack.client)
        request = create_table_request(WITHOUT_INDEX)
        request["GlobalSecondaryIndexes"] = [
            index
            for index in request["GlobalSecondaryIndexes"]
            if index["IndexName"] != AGENT_EXECUTIONS_INDEX.name
        ]
        request["AttributeDefinitions"] = [
            a for a in request["AttributeDefinitions"] if not a["AttributeName"].startswith("gsi5")
        ]
        stack.client.create_table(**request)
        header(f"Units per execution (create for one agent, claim, result; mean of {LIVES})")
        bind_table(WITHOUT_INDEX)
        before = per_life(lives(stack, meter, "without gsi5"))
        bind_table(TABLE)
        after = per_life(lives(stack, meter, "with gsi5"))
        for label, row in (("without gsi5 (baseline)", before), ("with gsi5", after)):
            print(f"  {label:24} {row['rcu']:5.1f} RCU {row['wcu']:5.1f} WCU {row['gsi_wcu']:5.1f} GSI WCU")
        total_before, total_after = before["wcu"] + before["gsi_wcu"], after["wcu"] + after["gsi_wcu"]
        print(f"  all writes: {total_before:g} -> {total_after:g} WCU ({total_after / total_before:.3f}x)")
        figures["per_execution"] = {"without": before, "with": after}

        header(f"Reading the agent page's tasks ({TASKS} tasks, this agent in every other one)")
        agent, other = BenchAgent(101), BenchAgent(102)
        token = stack.mint_token(max_uses=2)
        stack.register(agent, token)
        stack.register(other, token)
        for n in range(TASKS):
            target = agent if n % 2 == 0 else other
            stack.operator(
                "tasks",
                "POST",
                "/v1/tasks",
                {"command": f"echo {n}", "targets": {"agent_ids": [target.agent_id]}},
            )
        with meter.measure("old") as old:
            listed = stack.operator("tasks", "GET", "/v1/tasks", query="limit=50")
        mine = [t for t in listed["items"] if agent.agent_id in (t["targets"].get("agent_ids") or [])]
        with meter.measure("new") as new:
            page = stack.operator("tasks", "GET", f"/v1/agents/{agent.agent_id}/executions", query="limit=20")
        print(
            f"  before: 50 most recent tasks, filtered: {old.rcu:5.1f} RCU, "
            f"{len(mine)} of its {TASKS // 2} tasks  ({', '.join(old.operations())})"
        )
        print(
            f"  after:  its executions, a page of 20:  {new.rcu:5.1f} RCU, "
            f"{len(page['items'])} (and a cursor to the rest)  ({', '.join(new.operations())})"
        )
        print(f"  read ratio after/before: {new.rcu / old.rcu:.2f}")
        figures["agent_page"] = {
            "before": {"rcu": old.rcu, "found": len(mine)},
            "after": {"rcu": new.rcu, "found": len(page["items"])},
        }
    save_results("agent_executions", figures)


if __name__ == "__main__":
    main()
