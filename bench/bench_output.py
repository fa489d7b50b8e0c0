"""Task output: request units per live output chunk and per execution, the idle heartbeat call for
call, and the lag from a line printed on a node to the line shown by `tasks logs -f`.

Units: through the real handlers on moto, counted by CapacityMeter (AWS rules from item sizes),
against a bare 100-byte PutItem measured in the same run. Idle heartbeat: the steady heartbeat of
an agent that never ran a task, then of one that streamed output and reported; plus the figures
bench/bench_capacity.py saved before this change (bench/results/heartbeat_units.json). Lag: a real
`fleetlink dev`, a real `fleetlink agent run` and `fleetlink tasks logs -f`, each line carrying the
time it was printed; the baseline is one GET of the output route measured in the same run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _support import (
    OPERATOR_TOKEN,
    PYTHON,
    ROOT,
    BenchAgent,
    Stack,
    header,
    local_stack,
    percentile,
    save_results,
)
from capacity import CapacityMeter, Measurement

CHUNK_SIZES = (100, 1024, 8 * 1024, 64 * 1024)
LINES = 100
LINE_GAP_S = 0.1
LAG_GOALS = {"p50": 1.5, "p99": 3.0}


def signed(stack: Stack, agent: BenchAgent, method: str, path: str, body: Any) -> dict[str, Any]:
    assert agent.agent_id is not None
    raw = json.dumps(body).encode()
    response = stack.invoke("tasks", agent.signed_event(method, path, raw, key_id=agent.agent_id))
    result: dict[str, Any] = json.loads(response["body"])
    return result


def ops(m: Measurement) -> str:
    return ", ".join(m.operations())


def measure(meter: CapacityMeter, label: str, action: Any) -> Measurement:
    with meter.measure(label) as measurement:
        action()
    return measurement


def lease(stack: Stack, agent: BenchAgent) -> dict[str, Any]:
    stack.operator(
        "tasks", "POST", "/v1/tasks", {"command": "make", "targets": {"agent_ids": [agent.agent_id]}}
    )
    claimed = signed(stack, agent, "POST", f"/v1/agents/{agent.agent_id}/executions/claim", {"max": 1})
    execution: dict[str, Any] = claimed["executions"][0]
    return execution


def result_body(attempt: int, output: str) -> dict[str, Any]:
    now = int(time.time() * 1000)
    return {
        "attempt": attempt,
        "status": "succeeded",
        "exit_code": 0,
        "output": output,
        "stderr": "warn\n",
        "started_at": now,
        "finished_at": now,
    }


def units() -> dict[str, Any]:
    figures: dict[str, Any] = {}
    with local_stack() as stack:
        meter = CapacityMeter(stack.client)
        baseline = measure(
            meter,
            "bare PutItem",
            lambda: stack.client.put_item(
                TableName="fleetlink", Item={"pk": {"S": "BASE"}, "sk": {"S": "#"}, "v": {"S": "x" * 60}}
            ),
        )
        token = stack.mint_token(max_uses=3)
        quiet, streamer = BenchAgent(1), BenchAgent(2)
        for agent in (quiet, streamer):
            stack.register(agent, token)
            stack.invoke("heartbeat", agent.heartbeat_event(0))
        idle_before = measure(meter, "idle hb", lambda: stack.invoke("heartbeat", quiet.heartbeat_event(1)))

        header("Request units per live output chunk (AWS rules; ratio to a bare 100 B PutItem)")
        print(f"  bare PutItem, 100 B (baseline): {baseline.wcu:g} WCU")
        execution = lease(stack, streamer)
        path = f"/v1/executions/{execution['execution_id']}/output"
        per_chunk: dict[str, Any] = {}
        for seq, size in enumerate(CHUNK_SIZES, 1):
            body = {"attempt": 1, "seq": seq, "parts": [{"stream": "stdout", "data": "x" * size}]}
            m = measure(meter, f"chunk {size}", lambda body=body: signed(stack, streamer, "POST", path, body))
            per_chunk[str(size)] = {"rcu": m.rcu, "wcu": m.wcu, "gsi_wcu": m.gsi_wcu, "calls": m.operations()}
            print(
                f"  chunk of {size:>6} B: {m.rcu:5.1f} RCU {m.wcu:5.1f} WCU {m.gsi_wcu:3.0f} GSI WCU"
                f"  ({m.wcu / baseline.wcu:5.1f}x the PutItem)  {ops(m)}"
            )
        resend = {
            "attempt": 1,
            "seq": len(CHUNK_SIZES),
            "parts": [{"stream": "stdout", "data": "x" * CHUNK_SIZES[-1]}],
        }
        m = measure(meter, "resend", lambda: signed(stack, streamer, "POST", path, resend))
        print(f"  resend of the 64 KiB chunk (duplicate): {m.rcu:5.1f} RCU {m.wcu:5.1f} WCU  " + ops(m))
        per_chunk["resend_64k"] = {"rcu": m.rcu, "wcu": m.wcu}
        read = measure(meter, "read", lambda: stack.operator("tasks", "GET", path, query="after=0"))
        print(
            f"  operator read of {len(CHUNK_SIZES)} chunks (GET .../output): {read.rcu:5.1f} RCU  "
            + ops(read)
        )
        per_chunk["read_page"] = {"rcu": read.rcu}
        figures["chunk"] = per_chunk

        header("Request units per execution: claim and result, with and without 10 one-KiB chunks")
        rows: dict[str, Any] = {}
        for streaming in (False, True):

            def run(streaming: bool = streaming) -> None:
                leased = lease(stack, streamer)
                exe = f"/v1/executions/{leased['execution_id']}"
                if streaming:
                    for seq in range(1, 11):
                        chunk = {
                            "attempt": 1,
                            "seq": seq,
                            "parts": [{"stream": "stdout", "data": "y" * 1024}],
                        }
                        signed(stack, streamer, "POST", f"{exe}/output", chunk)
                signed(stack, streamer, "POST", f"{exe}/result", result_body(1, "done\n"))

            m = measure(meter, f"execution streaming={streaming}", run)
            label = "with 10 chunks" if streaming else "without streaming"
            rows[label] = {"rcu": m.rcu, "wcu": m.wcu, "gsi_wcu": m.gsi_wcu}
            print(
                f"  {label:20} {m.rcu:6.1f} RCU {m.wcu:6.1f} WCU {m.gsi_wcu:5.1f} GSI WCU"
                " (create, claim, report)"
            )
        figures["execution"] = rows

        idle_after = measure(
            meter, "idle hb after", lambda: stack.invoke("heartbeat", quiet.heartbeat_event(2))
        )
        streamed_after = measure(
            meter, "hb of the streamer", lambda: stack.invoke("heartbeat", streamer.heartbeat_event(1))
        )
        header("The idle heartbeat, call for call")
        saved = json.loads((ROOT / "bench" / "results" / "heartbeat_units.json").read_text())["sequenced"]
        saved_calls = json.loads((ROOT / "bench" / "results" / "heartbeat_units.json").read_text())[
            "sequenced_calls"
        ]
        for label, m in (
            ("idle agent, before any output", idle_before),
            ("idle agent, after others streamed", idle_after),
            ("the agent that streamed, now idle", streamed_after),
        ):
            print(f"  {label:36} {m.rcu:4.1f} RCU {m.wcu:4.1f} WCU {m.gsi_wcu:3.1f} GSI WCU  {ops(m)}")
        print(
            f"  {'saved before this change':36} {saved['rcu']:4.1f} RCU {saved['wcu']:4.1f} WCU "
            f"{saved['gsi_wcu']:3.1f} GSI WCU  {', '.join(saved_calls)}"
        )
        same = {
            (m.rcu, m.wcu, m.gsi_wcu, tuple(m.operations()))
            for m in (idle_before, idle_after, streamed_after)
        } | {(saved["rcu"], saved["wcu"], saved["gsi_wcu"], tuple(saved_calls))}
        print("  -> " + ("identical" if len(same) == 1 else f"THEY DIFFER: {same}"))
        figures["idle_heartbeat"] = {
            "rcu": idle_after.rcu,
            "wcu": idle_after.wcu,
            "calls": idle_after.operations(),
            "identical_to_before": len(same) == 1,
        }
    return figures


# --- lag on the dev stack ------------------------------------------------------------------------


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT / "src"), "NO_COLOR": "1", **extra}


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "fleetlink.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )


def lag() -> dict[str, Any]:
    header(f"Lag from a line printed on the node to `tasks logs -f` ({LINES} lines, {LINE_GAP_S} s apart)")
    with tempfile.TemporaryDirectory() as home:
        dev = subprocess.Popen(
            [PYTHON, "-m", "fleetlink.cli", "dev", "--port", "0", "--ephemeral"],
            env=_env(FLEETLINK_OPERATOR_TOKEN=OPERATOR_TOKEN, FLEETLINK_HEARTBEAT_INTERVAL_S="1"),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert dev.stdout is not None
        url = ""
        for line in dev.stdout:
            if line.startswith("fleetlink dev listening on "):
                url = line.split()[-1]
                break
        threading.Thread(target=lambda: [None for _ in dev.stdout], daemon=True).start()  # type: ignore[union-attr]
        agent_proc = None
        try:
            from fleetlink.client.operator import OperatorClient

            operator = OperatorClient(url, OPERATOR_TOKEN)
            token = operator.create_token(ttl_seconds=600, max_uses=1, tags={"role": "lag"}).token
            env = _env(
                FLEETLINK_URL=url,
                FLEETLINK_STATE_DIR=home,
                FLEETLINK_MACHINE_ID=f"lag-{uuid.uuid4().hex}",
                FLEETLINK_REGISTRATION_TOKEN=token,
                FLEETLINK_OPERATOR_TOKEN=OPERATOR_TOKEN,
            )
            agent_id = _cli("agent", "register", "--name", "lag-1", env=env).stdout.strip()
            agent_proc = subprocess.Popen(
                [PYTHON, "-m", "fleetlink.cli", "agent", "run"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(3)  # the agent's first heartbeat
            command = f'for i in $(seq 1 {LINES}); do echo "$i $(date +%s%N)"; sleep {LINE_GAP_S}; done'
            created = operator.create_task(command=command, agent_ids=[agent_id], timeout_seconds=120)
            logs = subprocess.Popen(
                [PYTHON, "-m", "fleetlink.cli", "tasks", "logs", created.task_id, "-f"],
                env=env,
                stdout=subprocess.PIPE,
                text=True,
            )
            assert logs.stdout is not None
            lags: list[float] = []
            for line in logs.stdout:
                shown_ns = time.time_ns()
                _number, printed_ns = line.split()
                lags.append((shown_ns - int(printed_ns)) / 1e9)
            logs.wait()
            task = operator.get_task(created.task_id)
            execution_id = task.executions[0].execution_id
            polls = []
            for _ in range(30):
                started = time.perf_counter()
                operator.execution_output(execution_id, after=0)
                polls.append(time.perf_counter() - started)
            operator.close()
        finally:
            if agent_proc is not None:
                agent_proc.terminate()
                agent_proc.wait()
            dev.terminate()
            dev.wait()
    poll = percentile(polls, 50)
    figures = {
        "lines": len(lags),
        "p50_s": percentile(lags, 50),
        "p99_s": percentile(lags, 99),
        "max_s": max(lags),
        "output_get_p50_s": poll,
    }
    print(f"  lines shown: {len(lags)} of {LINES}")
    print(f"  baseline: one GET of the output route, p50 {poll * 1000:.1f} ms")
    for name in ("p50", "p99"):
        value = figures[f"{name}_s"]
        print(
            f"  lag {name}: {value:.2f} s ({value / poll:.0f}x the GET; goal <= {LAG_GOALS[name]} s -> "
            + ("meets" if value <= LAG_GOALS[name] else "MISSES")
            + ")"
        )
    print(f"  lag max: {figures['max_s']:.2f} s")
    return figures


def main() -> None:
    figures = units()
    figures["lag"] = lag()
    save_results("output", figures)


if __name__ == "__main__":
    main()
