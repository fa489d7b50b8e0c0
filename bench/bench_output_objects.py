"""Complete output in S3: S3 requests and request units per execution, and what the objects weigh.

Through the real handlers on moto (DynamoDB and S3 in this process): an execution whose stdout and
stderr outgrew the inline copy is created, claimed, reported with its two declared objects, the
agent asks for upload links and puts both objects, then an operator gets a download link for each
and fetches it. Every S3 request any client sends is counted (a botocore hook on the session all
clients come from; a presigned link is not a request, its use is); request units by CapacityMeter,
against the same execution without complete output, measured in the same run. Storage: gzip (as the
agent compresses) of three kinds of output, against their raw size measured in the same run.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import random
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _support import BenchAgent, Stack, header, local_stack, save_results
from capacity import CapacityMeter
from fleetlink.agent.tasks.uploads import COMPRESS_LEVEL

BUCKET = "fleetlink-bench-output"
#: S3 Standard, us-east-1, list prices as this project knew them in November 2025.
S3_PUT_PER_1000 = 0.005
S3_GET_PER_1000 = 0.0004
S3_GB_MONTH = 0.023


def outputs() -> dict[str, bytes]:
    """Three kinds of long output: a build log, a number dump, and one byte repeated (the e2e test's)."""
    rng = random.Random(7)
    packages = [
        f"lib{rng.choice(['ssl', 'xml', 'z', 'ffi', 'gcc', 'std'])}{rng.randint(1, 9)}" for _ in range(400)
    ]
    log = "".join(
        f"2026-12-06T05:{i // 600 % 60:02d}:{i // 10 % 60:02d}Z Unpacking {rng.choice(packages)} "
        f"({rng.randint(1, 12)}.{rng.randint(0, 40)}-{rng.randint(1, 9)}) over ({rng.randint(1, 12)}.0) ...\n"
        for i in range(60_000)
    ).encode()
    numbers = "".join(f"{i}\n" for i in range(1, 700_001)).encode()
    return {"build log": log, "seq 1 700000": numbers, "5 MiB of one byte": b"x" * 5 * 1024 * 1024}


def declared(stream: str, data: bytes) -> tuple[dict[str, Any], bytes]:
    body = gzip.compress(data, compresslevel=COMPRESS_LEVEL, mtime=0)
    return {
        "stream": stream,
        "size": len(body),
        "sha256": hashlib.sha256(body).hexdigest(),
        "bytes": len(data),
    }, body


def signed(stack: Stack, agent: BenchAgent, method: str, path: str, body: Any) -> dict[str, Any]:
    assert agent.agent_id is not None
    raw = json.dumps(body).encode() if body is not None else b""
    response = stack.invoke("tasks", agent.signed_event(method, path, raw, key_id=agent.agent_id))
    answer: dict[str, Any] = json.loads(response["body"])
    return answer


def execution(stack: Stack, agent: BenchAgent, objects: list[dict[str, Any]] | None) -> str:
    stack.operator(
        "tasks", "POST", "/v1/tasks", {"command": "make", "targets": {"agent_ids": [agent.agent_id]}}
    )
    claim = f"/v1/agents/{agent.agent_id}/executions/claim"
    exe: str = signed(stack, agent, "POST", claim, {"max": 1})["executions"][0]["execution_id"]
    now = int(time.time() * 1000)
    result: dict[str, Any] = {"attempt": 1, "status": "succeeded", "exit_code": 0, "started_at": now}
    result |= {"finished_at": now, "output": "head...tail\n", "output_truncated": True, "output_bytes": 10**6}
    if objects:
        result["output_objects"] = objects
    signed(stack, agent, "POST", f"/v1/executions/{exe}/result", result)
    return exe


def main() -> None:
    os.environ["FLEETLINK_OUTPUT_BUCKET"] = BUCKET
    figures: dict[str, Any] = {}
    kinds = outputs()
    header("What the objects weigh: gzip as the agent compresses, against the raw output (same run)")
    ratios: dict[str, Any] = {}
    for name, data in kinds.items():
        started = time.perf_counter()
        compressed = gzip.compress(data, compresslevel=COMPRESS_LEVEL, mtime=0)
        seconds = time.perf_counter() - started
        ratios[name] = {"raw": len(data), "gzip": len(compressed), "ratio": len(compressed) / len(data)}
        print(
            f"  {name:18} {len(data):>9,} B raw -> {len(compressed):>9,} B gzip "
            f"({len(compressed) / len(data):6.1%} of raw; {len(data) / seconds / 1e6:5.0f} MB/s)"
        )
    figures["storage"] = ratios

    import boto3

    with local_stack() as stack:
        requests: Counter[str] = Counter()
        boto3.setup_default_session()  # clients made from here on count their S3 requests
        boto3.DEFAULT_SESSION.events.register(  # type: ignore[union-attr]
            "before-send.s3", lambda request, **_: requests.update([request.method])
        )
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        meter = CapacityMeter(stack.client)
        agent = BenchAgent(1)
        stack.register(agent, stack.mint_token())
        stdout, stdout_body = declared("stdout", kinds["build log"])
        stderr, stderr_body = declared("stderr", kinds["build log"][:200_000])

        header("Per execution: request units and S3 requests, with and without complete output")
        with meter.measure("without") as without:
            execution(stack, agent, None)
        requests.clear()
        with meter.measure("with") as with_objects:
            exe = execution(stack, agent, [stdout, stderr])
            links = signed(stack, agent, "POST", f"/v1/executions/{exe}/output-uploads", {"attempt": 1})
            for upload, body in zip(links["uploads"], (stdout_body, stderr_body), strict=True):
                s3.put_object(Bucket=BUCKET, Key=upload["key"], Body=body)  # the agent's presigned PUT
        agent_requests = dict(requests)
        requests.clear()
        with meter.measure("download") as download:
            for stream in ("stdout", "stderr"):
                link = stack.operator("tasks", "GET", f"/v1/executions/{exe}/output-objects/{stream}")
                s3.get_object(Bucket=BUCKET, Key=link["key"])["Body"].read()  # the operator's GET
        operator_requests = dict(requests)
        for label, m in (
            ("create, claim, report", without),
            ("... + 2 objects declared, linked, put", with_objects),
        ):
            print(f"  {label:40} {m.rcu:5.1f} RRU {m.wcu:5.1f} WRU {m.gsi_wcu:4.1f} GSI WRU")
        print(
            f"  {'the 2 objects: upload links and PUTs':40} {with_objects.rcu - without.rcu:+5.1f} RRU "
            f"{with_objects.wcu - without.wcu:+5.1f} WRU; S3 requests {agent_requests}"
        )
        print(
            f"  {'an operator downloading both':40} {download.rcu:5.1f} RRU {download.wcu:5.1f} WRU; "
            f"S3 requests {operator_requests} (a HEAD by the API, a GET by the CLI, per stream)"
        )
        figures["per_execution"] = {
            "without": {"rcu": without.rcu, "wcu": without.wcu, "gsi_wcu": without.gsi_wcu},
            "with_two_objects": {
                "rcu": with_objects.rcu,
                "wcu": with_objects.wcu,
                "gsi_wcu": with_objects.gsi_wcu,
            },
            "agent_s3_requests": agent_requests,
            "download_both": {"rcu": download.rcu, "wcu": download.wcu, "s3_requests": operator_requests},
        }

    header("At 10,000 agents (the task mix of docs/cost.md: 2 of 10 tasks a day print for 60 s)")
    objects = 10_000 * 2 * 30  # each of those two writes one stdout object (stderr stays inline)
    weight = ratios["build log"]["ratio"] * 200 * 1024  # 200 KiB of output each
    gb = objects * weight / 1024**3
    month = {
        "objects": objects,
        "stored_gb": gb,
        "puts": objects * S3_PUT_PER_1000 / 1000,
        "storage": gb * S3_GB_MONTH,
        "downloads_of_1_percent": objects / 100 * S3_GET_PER_1000 / 1000,
    }
    print(f"  {objects:,} objects a month of ~{weight / 1024:.0f} KiB (200 KiB of log, gzip)")
    print(f"  {gb:.1f} GB kept 31 days")
    gets = month["downloads_of_1_percent"]
    print(f"  PUTs ${month['puts']:.2f} + storage ${month['storage']:.2f} + GETs of 1% ${gets:.4f}")
    figures["fleet_month"] = month
    save_results("output_objects", figures)


if __name__ == "__main__":
    main()
