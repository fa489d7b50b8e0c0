"""CloudWatch Logs bytes per heartbeat: the function's own lines, Lambda's per-invocation lines, the
access log line, before (text START/END/REPORT, the full access log format) and after (Lambda's JSON
format at system level WARN, the compact access log format).

The function's own lines are measured: heartbeats run through ``functions/heartbeat/handler.py`` in a
fresh interpreter with the deployed log settings and its stdout is counted. Lambda's own lines and
the access log line cannot be produced off AWS: they are rendered from their documented formats
with values of a real heartbeat's size (ids, times, path), and each is printed so it can be checked.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from infra.constructs.http_api import ACCESS_LOG_FORMAT, COMPACT_ACCESS_LOG_FORMAT

from _support import header, save_results

HEARTBEATS = 50
AGENT_ID = "agt_01JDZ3K8Q5W7N2M4P6R8T0V2X4"
REQUEST_ID = "8f3c2a1e-5b7d-4c9e-a1f2-3d4e5f6a7b8c"
TRACE_ID = "1-6745d2a1-3f4e5d6c7b8a9f0e1d2c3b4a"

#: The values API Gateway puts into an access log line for one heartbeat.
CONTEXT = {
    "$context.requestId": "Cz3k0hYhIAMEbRw=",
    "$context.requestTimeEpoch": "1764512345678",
    "$context.identity.sourceIp": "203.0.113.57",
    "$context.identity.userAgent": "fleetlink-agent/0.1.0 python-httpx/0.28.1",
    "$context.identity.userArn": "-",
    "$context.httpMethod": "POST",
    "$context.routeKey": "POST /v1/agents/{agent_id}/heartbeat",
    "$context.path": f"/v1/agents/{AGENT_ID}/heartbeat",
    "$context.status": "200",
    "$context.protocol": "HTTP/1.1",
    "$context.responseLength": "142",
    "$context.responseLatency": "27",
    "$context.integrationLatency": "24",
    "$context.integrationStatus": "200",
    "$context.integrationErrorMessage": "-",
    "$context.authorizer.error": "-",
}

#: Lambda's per-invocation lines in the text format (what a function without a logging config writes).
TEXT_PLATFORM_LINES = [
    f"START RequestId: {REQUEST_ID} Version: $LATEST\n",
    f"END RequestId: {REQUEST_ID}\n",
    f"REPORT RequestId: {REQUEST_ID}\tDuration: 21.37 ms\tBilled Duration: 22 ms\tMemory Size: 512 MB\t"
    f"Max Memory Used: 98 MB\t\nXRAY TraceId: {TRACE_ID}\tSegmentId: 5e6f7a8b9c0d1e2f\tSampled: false\t\n",
]
#: The same lines in Lambda's JSON format at system level INFO (WARN drops all three).
JSON_PLATFORM_LINES = [
    json.dumps(
        {
            "time": "2025-11-30T14:25:45.678Z",
            "type": "platform.start",
            "record": {"requestId": REQUEST_ID, "version": "$LATEST"},
        }
    ),
    json.dumps(
        {
            "time": "2025-11-30T14:25:45.700Z",
            "type": "platform.runtimeDone",
            "record": {
                "requestId": REQUEST_ID,
                "status": "success",
                "metrics": {"durationMs": 21.37, "producedBytes": 0},
            },
        }
    ),
    json.dumps(
        {
            "time": "2025-11-30T14:25:45.701Z",
            "type": "platform.report",
            "record": {
                "requestId": REQUEST_ID,
                "metrics": {
                    "durationMs": 21.37,
                    "billedDurationMs": 22,
                    "memorySizeMB": 512,
                    "maxMemoryUsedMB": 98,
                },
                "tracing": {"spanId": "5e6f7a8b9c0d1e2f", "type": "X-Amzn-Trace-Id", "value": TRACE_ID},
                "status": "success",
            },
        }
    ),
]

RUN_HEARTBEATS = """
import json, sys
sys.path.insert(0, "bench")
from _support import BenchAgent, local_stack
with local_stack() as stack:
    agent = BenchAgent(1)
    stack.register(agent, stack.mint_token())
    stack.invoke("heartbeat", agent.heartbeat_event(0))
    sys.stdout.flush()
    print("=== measured from here ===", flush=True)
    for beat in range(1, {n} + 1):
        stack.invoke("heartbeat", agent.heartbeat_event(beat))
    sys.stdout.flush()
    print("=== replay from here ===", flush=True)
    replayed = agent.heartbeat_event({n} + 1)
    stack.invoke("heartbeat", replayed)
    sys.stdout.flush()
    print("=== refused from here ===", flush=True)
    stack.invoke("heartbeat", replayed, expect=401)
"""


def access_line(fields: dict[str, str]) -> str:
    """The access log line API Gateway writes for one heartbeat with this format."""
    return json.dumps({key: CONTEXT[value] for key, value in fields.items()}, separators=(",", ":")) + "\n"


def handler_bytes() -> tuple[float, int]:
    """Bytes the heartbeat function itself writes per accepted heartbeat, and for one refused replay."""
    from _support import fresh_python

    code = "import os; os.environ['POWERTOOLS_LOG_LEVEL'] = 'INFO'\n" + RUN_HEARTBEATS.format(n=HEARTBEATS)
    out = fresh_python(code).stdout
    measured = out.split("=== measured from here ===\n", 1)[1].split("=== replay from here ===\n", 1)[0]
    refused = out.split("=== refused from here ===\n", 1)[1]
    return len(measured.encode()) / HEARTBEATS, len(refused.encode())


def main() -> None:
    own, refused = handler_bytes()
    text_platform = sum(len(line.encode()) for line in TEXT_PLATFORM_LINES)
    json_platform = sum(len(line.encode()) + 1 for line in JSON_PLATFORM_LINES)
    full, compact = access_line(ACCESS_LOG_FORMAT), access_line(COMPACT_ACCESS_LOG_FORMAT)
    before = own + text_platform + len(full.encode())
    after = own + len(compact.encode())

    header(f"CloudWatch Logs bytes per idle heartbeat ({HEARTBEATS} measured through the handler)")
    print(f"  function's own lines (measured, INFO):        {own:7.1f} B per accepted heartbeat")
    print(f"  function's own lines for a refused replay:    {refused:7d} B (401, measured)")
    print(f"  Lambda START/END/REPORT+XRAY, text format:    {text_platform:7d} B  (before)")
    print(f"  Lambda platform records, JSON at INFO:        {json_platform:7d} B  (JSON alone costs more)")
    print("  Lambda platform records, JSON at WARN:              0 B  (after: errors, timeouts still logged)")
    print(f"  access log line, full format:                 {len(full.encode()):7d} B  (before)")
    print(f"  access log line, compact format:              {len(compact.encode()):7d} B  (after)")
    print(f"  total before: {before:.0f} B; after: {after:.0f} B; {after / before:.0%} of before")
    print(f"  compact line: {compact.strip()}")
    save_results(
        "log_bytes",
        {
            "before_bytes_per_heartbeat": before,
            "after_bytes_per_heartbeat": after,
            "function_own_bytes": own,
            "platform_text_bytes": text_platform,
            "platform_json_info_bytes": json_platform,
            "access_full_bytes": len(full.encode()),
            "access_compact_bytes": len(compact.encode()),
        },
    )


if __name__ == "__main__":
    main()
