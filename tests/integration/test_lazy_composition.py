"""A function builds only what its routes use: checked in a fresh interpreter (a cold container)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]

#: Mint a token and register an agent through the registration function, then (``heartbeat``)
#: send one heartbeat through the heartbeat function; print the fleetlink task modules loaded.
SCRIPT = """
import hashlib, json, sys
from fleetlink.api.deps import build_deps, set_deps
from fleetlink.api.settings import OperatorAuth, Settings
from fleetlink.core.clock import FixedClock
from fleetlink.local.moto_backend import local_dynamodb
from tests.support import NOW_MS, OPERATOR_TOKEN, Api, Machine

with local_dynamodb("fleetlink-lazy"):
    digest = hashlib.sha256(OPERATOR_TOKEN.encode()).hexdigest()
    settings = Settings(
        table_name="fleetlink-lazy", region="us-east-1",
        operator_auth=OperatorAuth.TOKEN, operator_token_sha256=digest,
    )
    clock = FixedClock(NOW_MS)
    set_deps(build_deps(settings, clock))
    api, machine = Api(clock), Machine("lazy")
    statuses = [api.register(machine, api.mint_token()).status]
    if sys.argv[1] == "heartbeat":
        statuses.append(api.heartbeat(machine).status)
    loaded = sorted(name for name in sys.modules if name.startswith("fleetlink.") and "task" in name)
    print(json.dumps({"statuses": statuses, "task_modules": loaded}))
"""


def run_cold(flow: str) -> dict[str, list[object]]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, flow], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, list[object]] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_registration_function_loads_no_task_module() -> None:
    # Given a fresh interpreter
    # When the registration function mints a token and registers an agent
    result = run_cold("registration")
    # Then both requests succeed and no fleetlink tasks module was imported
    assert result == {"statuses": [201], "task_modules": []}


def test_heartbeat_function_loads_the_task_capability_it_uses() -> None:
    # Given a fresh interpreter, after the same registration
    # When the agent sends a heartbeat (tasks contribute renewals and the pending count)
    result = run_cold("heartbeat")
    # Then it succeeds, and the task core and store were loaded for it (the check above can see them)
    assert result["statuses"] == [201, 200]
    assert {"fleetlink.core.tasks.service", "fleetlink.store.tasks"} <= set(result["task_modules"])
