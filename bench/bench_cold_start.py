"""Cold start: import time of each Lambda handler in a fresh interpreter, against ``import boto3``.

The functions come from the registry (``fleetlink.api.functions.FUNCTIONS``); each round runs every
arm once in a shuffled order with a baseline run between any two handler runs, so a busy machine's
noise falls on both sides; medians over many rounds.

With ``--before REV``, the heartbeat handler as it was at a git revision (its ``src`` and
``functions`` exported to a temporary folder, first on ``sys.path``) is one more arm of the same
rounds, so the ratio before and after come from one run.

Then, separately, import + first request (heartbeat: a signed heartbeat; operator: GET /v1/health)
against import boto3 + a client from a fresh session + one GetItem, both on moto started in the
same process before the timer. Last, the heartbeat handler's heaviest imports (``-X importtime``).
"""

from __future__ import annotations

import argparse
import json
import random
import re
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _support import (
    ROOT,
    TABLE,
    BenchAgent,
    fresh_python,
    handler_path,
    header,
    http_event,
    local_stack,
    median,
    ratio_text,
    save_results,
)
from fleetlink.api.functions import FUNCTIONS as REGISTRY

FUNCTIONS = tuple(REGISTRY)
IMPORT_ROUNDS = 21
FIRST_REQUEST_RUNS = 9
GOAL = "<= 1.3"
#: The arm of the heartbeat handler as it was at ``--before``.
BEFORE = "heartbeat handler at --before"

# Both arms import the same helpers before the timer starts.
IMPORT_BOTO3 = """
import time, importlib.util
start = time.perf_counter()
import boto3
print(time.perf_counter() - start)
"""

IMPORT_HANDLER = """
import time, importlib.util, sys
sys.path[:0] = {path_first!r}
start = time.perf_counter()
spec = importlib.util.spec_from_file_location("handler", {path!r})
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
print(time.perf_counter() - start)
"""

# moto (which imports boto3 and botocore) starts and the table is created before the timer.
FIRST_REQUEST_PRELUDE = """
import importlib.util, json, os, sys, time
import botocore.session
from fleetlink.local.events import LocalLambdaContext
from fleetlink.local.moto_backend import local_dynamodb

seed = json.loads(sys.stdin.read())
created = []
_create_client = botocore.session.Session.create_client

def counting_create_client(self, *args, **kwargs):
    start = time.perf_counter()
    client = _create_client(self, *args, **kwargs)
    created.append(time.perf_counter() - start)
    return client

botocore.session.Session.create_client = counting_create_client
"""

FIRST_REQUEST_HANDLER = (
    FIRST_REQUEST_PRELUDE
    + """
with local_dynamodb({table!r}) as seeding_client:
    for item in seed["items"]:
        seeding_client.put_item(TableName={table!r}, Item=item)
    created.clear()
    context = LocalLambdaContext(function_name="fleetlink-{function}")
    start = time.perf_counter()
    spec = importlib.util.spec_from_file_location("handler", {path!r})
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    imported = time.perf_counter()
    first = module.lambda_handler(seed["events"][0], context)
    done = time.perf_counter()
    second = module.lambda_handler(seed["events"][1], context)
    again = time.perf_counter()
    print(json.dumps({{
        "import": imported - start, "first": done - imported, "total": done - start,
        "second": again - done, "status": [first["statusCode"], second["statusCode"]],
        "clients": len(created), "client_s": sum(created),
    }}))
"""
)

FIRST_REQUEST_BOTO3 = (
    FIRST_REQUEST_PRELUDE
    + """
with local_dynamodb({table!r}):
    created.clear()
    start = time.perf_counter()
    import boto3
    client = boto3.session.Session().client("dynamodb", region_name=os.environ["AWS_DEFAULT_REGION"])
    client.get_item(TableName={table!r}, Key={{"pk": {{"S": "AGENT#none"}}, "sk": {{"S": "STATE#PROFILE"}}}})
    done = time.perf_counter()
    print(json.dumps({{"total": done - start, "clients": len(created), "client_s": sum(created)}}))
"""
)


def seconds(code: str) -> float:
    return float(fresh_python(code).stdout.strip().splitlines()[-1])


def exported(revision: str, into: Path) -> Path:
    """The ``src`` and ``functions`` folders as they were at ``revision``, under ``into``."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", revision, "src", "functions"], capture_output=True, check=True
    )
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into


def import_only(before: Path | None = None) -> dict[str, float]:
    header(f"Import only, fresh interpreter (median of {IMPORT_ROUNDS}; baseline: import boto3)")
    arms = {name: IMPORT_HANDLER.format(path=str(handler_path(name)), path_first=[]) for name in FUNCTIONS}
    if before is not None:
        path = before / "functions" / "heartbeat" / "handler.py"
        arms[BEFORE] = IMPORT_HANDLER.format(path=str(path), path_first=[str(before / "src")])
    times: dict[str, list[float]] = {name: [] for name in ("boto3", *arms)}
    shuffle = random.Random(12)
    for _ in range(IMPORT_ROUNDS):
        order = list(arms)
        shuffle.shuffle(order)
        for name in order:  # every handler run right after a baseline run
            times["boto3"].append(seconds(IMPORT_BOTO3))
            times[name].append(seconds(arms[name]))
    base = median(times["boto3"])
    print(f"  {'import boto3 (baseline)':32} {base * 1000:8.1f} ms")
    http = {spec.name for spec in REGISTRY.values() if spec.serves_http}
    for name in FUNCTIONS:
        value = median(times[name])
        label = f"functions/{name}/handler.py" + ("" if name in http else " (scheduled)")
        print(f"  {label:32} {value * 1000:8.1f} ms   {ratio_text(value, base, GOAL)}")
    if before is not None:
        value = median(times[BEFORE])
        print(f"  {BEFORE:32} {value * 1000:8.1f} ms   {ratio_text(value, base, GOAL)}")
    worst = max(median(times[name]) / base for name in http)
    print(f"  worst HTTP handler / import boto3: {worst:.2f} (goal {GOAL})")
    print("  note: the handlers load botocore's session/client machinery lazily (on their first DynamoDB")
    print("  call), so these import figures leave it out; the next section includes it.")
    return {name: median(values) for name, values in times.items()}


def seed_for_heartbeat() -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    """The agent partition of a registered agent, and two signed heartbeats for it."""
    with local_stack() as stack:
        agent = BenchAgent(1)
        stack.register(agent, stack.mint_token())
        items = stack.client.query(
            TableName=TABLE,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": f"AGENT#{agent.agent_id}"}},
        )["Items"]
        events = [agent.heartbeat_event(i) for i in range(2)]
    return items, events


def first_request(boto3_import_s: float, heartbeat_import_s: float) -> dict[str, object]:
    header(f"Import + first request, fresh interpreter (median of {FIRST_REQUEST_RUNS})")
    items, heartbeats = seed_for_heartbeat()
    health = [http_event("GET", "/v1/health"), http_event("GET", "/v1/health")]
    arms = {
        "baseline": (FIRST_REQUEST_BOTO3.format(table=TABLE), {"items": [], "events": []}),
        "heartbeat": (
            FIRST_REQUEST_HANDLER.format(
                table=TABLE, function="heartbeat", path=str(handler_path("heartbeat"))
            ),
            {"items": items, "events": heartbeats},
        ),
        "operator": (
            FIRST_REQUEST_HANDLER.format(
                table=TABLE, function="operator", path=str(handler_path("operator"))
            ),
            {"items": [], "events": health},
        ),
    }
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in arms}
    shuffle = random.Random(7)
    for _ in range(FIRST_REQUEST_RUNS):
        order = list(arms.items())
        shuffle.shuffle(order)
        for name, (code, seed) in order:
            result = fresh_python(code, stdin=json.dumps(seed))
            runs[name].append(json.loads(result.stdout.strip().splitlines()[-1]))

    def mid(name: str, key: str) -> float:
        return median([run[key] for run in runs[name]])

    base = mid("baseline", "total")
    print(f"  {'boto3 client (fresh session) + GetItem':40} {base * 1000:8.1f} ms   (baseline)")
    for name, label in (("heartbeat", "signed POST heartbeat"), ("operator", "GET /v1/health")):
        statuses = sorted({tuple(run["status"]) for run in runs[name]})  # type: ignore[arg-type]
        total = mid(name, "total")
        print(f"  {name + ' import + ' + label:40} {total * 1000:8.1f} ms   {ratio_text(total, base, GOAL)}")
        imported, first, second = (mid(name, key) * 1000 for key in ("import", "first", "second"))
        clients, client_ms = mid(name, "clients"), mid(name, "client_s") * 1000
        print(
            f"  {'':4}= import {imported:.0f} ms + first request {first:.0f} ms (of which creating"
            f" {clients:.0f} botocore clients: {client_ms:.0f} ms); second request {second:.1f} ms;"
            f" statuses {statuses}"
        )
    clients, client_ms = mid("baseline", "clients"), mid("baseline", "client_s") * 1000
    print(f"  {'':4}baseline: creating {clients:.0f} botocore client took {client_ms:.0f} ms")
    for text in (
        "caveat: moto runs in the measured process, so boto3 and botocore are imported before the timer",
        "starts in BOTH arms. A real Lambda cold start also pays the botocore import (about the import",
        "boto3 figure above), which the handlers pay on their first DynamoDB call, not at import.",
    ):
        print(f"  {text}")
    estimate = heartbeat_import_s + mid("heartbeat", "first") + boto3_import_s
    estimate_base = boto3_import_s + base
    print("  derived estimate, NOT measured (fresh import + first request + botocore import ~ import boto3):")
    print(
        f"  {'':4}heartbeat {estimate * 1000:.0f} ms vs boto3 + client + GetItem"
        f" {estimate_base * 1000:.0f} ms, {ratio_text(estimate, estimate_base, GOAL)}"
    )
    return {
        "first_request_total_s": {name: mid(name, "total") for name in ("heartbeat", "operator")},
        "first_request_baseline_s": base,
        "derived_heartbeat_ratio": estimate / estimate_base,
    }


def import_profile() -> None:
    header("Heaviest imports of functions/heartbeat/handler.py (-X importtime, cumulative)")
    result = fresh_python(
        IMPORT_HANDLER.format(path=str(handler_path("heartbeat")), path_first=[]),
        extra_args=["-X", "importtime"],
    )
    rows = []
    for line in result.stderr.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
        if match:
            rows.append((int(match[2]), int(match[1]), len(match[3]) // 2, match[4]))
    for cumulative, own, depth, name in sorted(rows, reverse=True)[:8]:
        print(f"  {cumulative / 1000:7.1f} ms cumulative {own / 1000:6.1f} ms self  depth {depth}  {name}")
    by_package: dict[str, int] = {}
    for _, own, _, name in rows:
        by_package[name.split(".")[0]] = by_package.get(name.split(".")[0], 0) + own
    top = sorted(by_package.items(), key=lambda pair: pair[1], reverse=True)[:8]
    print("  self time by top-level package: " + ", ".join(f"{name} {us / 1000:.0f} ms" for name, us in top))


def main() -> None:
    parser = argparse.ArgumentParser(description="Cold start of each Lambda handler against import boto3.")
    parser.add_argument("--before", metavar="REV", help="time the heartbeat handler at REV too")
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}; timings in fresh interpreters (subprocesses), same venv")
    with tempfile.TemporaryDirectory() as workdir:
        imports = import_only(exported(args.before, Path(workdir)) if args.before else None)
    first = first_request(imports["boto3"], imports["heartbeat"])
    import_profile()
    save_results(
        "cold_start",
        {"import_s": imports, "import_ratio": {n: imports[n] / imports["boto3"] for n in FUNCTIONS}, **first},
    )


if __name__ == "__main__":
    main()
