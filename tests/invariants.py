"""Invariants of the table that every request and cleanup duty must keep, checked by the tests.

``check_invariants`` answers the violations it finds (empty: the table is sound):

- each task's open counts equal its unfinished executions, shard by shard;
- a task whose executions are all final (and whose fan-out is written) is not active and has
  ``finished_at``; a finished task has no unfinished execution; a task has the ``execution_count``
  executions it says, counting those its unfinished fan-out still has to write;
- no execution, open count, slots item or fan-out marker without its task; every execution is in
  its agent's executions (gsi5);
- a ``max_concurrency`` task's slots count exactly its leased executions, within the limit;
- no registration token used more than its ``max_uses``, and each use is one successful registration
  (a purge removes an agent's registrations: at most one use per purged agent is unaccounted for);
- every ended attempt of an execution has its attempt item, and no attempt item is of one not ended;
- an attempt's output chunks are ``1..n`` without a gap, ``n`` the chunk head's number;
- a deleted agent is out of the agent list (in the deleted list), has no tag memberships and has its
  purge timer; an agent not deleted has no purge timer; a purged agent leaves only audit entries;
- a published release has its publication time, one still uploading has none;
- every operator write has exactly one audit entry and every entry its write: a token (or recovery
  token) one create entry, and a revoke entry exactly when revoked; a task one create entry, and a
  cancel entry exactly when cancelled; a tunnel one create entry, one patch entry per version it
  moved, and a delete entry exactly when gone; an agent a revoke entry exactly when revoked (a
  deleted one its delete entry) and its tags as its newest tag entry left them; a read policy as its
  newest entry left it; a release one announce entry, and a publish entry exactly when published;
  the release key as its newest key entry left it; a purged agent one purge entry, an agent not
  purged none; no entry about a resource that never was.

A test tool for moto only: it reads the whole table with one paginated, strongly consistent Scan,
because an item whose parent is gone (an execution without its task) cannot be found by key. The
service itself never scans.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterator
from typing import Any

import boto3
from boto3.dynamodb.types import TypeDeserializer

from fleetlink.core.releases.service import RELEASE_KEY_RESOURCE
from fleetlink.core.tasks.model import ExecutionStatus, TaskState
from fleetlink.store.keys import agent_executions_keys, task_shard

Item = dict[str, Any]
MAX_PAGES = 10_000


def check_invariants(table_name: str, client: Any | None = None) -> list[str]:
    """Every invariant violation in the table, one sentence each (empty when the table is sound)."""
    by_kind: dict[str, list[Item]] = defaultdict(list)
    for item in _all_items(client or boto3.client("dynamodb"), table_name):
        by_kind[item.get("type", "")].append(item)
    return [
        *_task_violations(by_kind),
        *_token_violations(by_kind),
        *_attempt_violations(by_kind),
        *_output_violations(by_kind),
        *_agent_violations(by_kind),
        *_release_violations(by_kind),
        *_audit_violations(by_kind),
    ]


def _task_violations(by_kind: dict[str, list[Item]]) -> Iterator[str]:
    tasks = {item["task_id"]: item for item in by_kind["task"]}
    executions: dict[str, list[Item]] = defaultdict(list)
    for execution in by_kind["execution"]:
        executions[execution["task_id"]].append(execution)
    open_counts: dict[str, dict[int, int]] = defaultdict(dict)
    for shard in by_kind["task_open"]:
        open_counts[shard["task_id"]][int(shard["pk"].rsplit("#", 1)[1])] = int(shard["open"])
    slots = {item["pk"].removeprefix("TASK#"): item for item in by_kind["task_slots"]}
    fanouts = {item["task_id"] for item in by_kind["task_fanout"]}
    to_write: Counter[str] = Counter()
    for chunk in by_kind["task_fanout_chunk"]:
        to_write[chunk["pk"].removeprefix("TASK#")] += len(chunk["executions"])

    for task_id in sorted(executions.keys() - tasks.keys()):
        yield f"task {task_id}: {len(executions[task_id])} executions but no task item"
    for task_id in sorted(open_counts.keys() - tasks.keys()):
        yield f"task {task_id}: open counts but no task item"
    for task_id in sorted(slots.keys() - tasks.keys()):
        yield f"task {task_id}: a slots item but no task item"
    for task_id in sorted(fanouts - tasks.keys()):
        yield f"task {task_id}: a fan-out marker but no task item"

    for execution in by_kind["execution"]:
        yield from _queue_key_violations(execution)
        listed = (execution.get("gsi5pk"), execution.get("gsi5sk"))
        if listed != agent_executions_keys(execution["agent_id"], execution["execution_id"]):
            yield f"execution {execution['execution_id']}: not in its agent's executions ({listed})"
    for task_id, task in sorted(tasks.items()):
        own = executions[task_id]
        unfinished = [e for e in own if not ExecutionStatus(e["status"]).terminal]
        yield from _open_count_violations(task_id, unfinished, open_counts[task_id])
        pending = to_write[task_id] if task_id in fanouts else 0
        if len(own) + pending != int(task["execution_count"]):
            yield (
                f"task {task_id}: execution_count {task['execution_count']} but {len(own)} executions"
                + (f" and {pending} still to write" if pending else "")
            )
        state = TaskState(task["state"])
        if own and not unfinished and task_id not in fanouts:
            if state is TaskState.ACTIVE:
                yield f"task {task_id}: active but all {len(own)} executions are final"
            if task.get("finished_at") is None:
                yield f"task {task_id}: all executions are final but finished_at is missing"
        if state is TaskState.FINISHED and unfinished:
            yield f"task {task_id}: finished with {len(unfinished)} unfinished executions"
        if task.get("max_concurrency"):
            yield from _slot_violations(task_id, task, own, slots.get(task_id))


def _queue_key_violations(execution: Item) -> Iterator[str]:
    """Queued executions and leases not yet started are in their agent's queue partition, nothing else."""
    status, sort_key = ExecutionStatus(execution["status"]), execution.get("gsi2sk")
    expected = {ExecutionStatus.QUEUED: "queued", ExecutionStatus.LEASED: "leased"}.get(status)
    found = None if sort_key is None else "leased" if str(sort_key).startswith("L#") else "queued"
    if found != expected:
        yield f"execution {execution['execution_id']}: {status.value} but in the queue index as {found}"


def _open_count_violations(task_id: str, unfinished: list[Item], counts: dict[int, int]) -> Iterator[str]:
    expected = Counter(
        task_shard(e["execution_id"], int(e["fanout"]) if e.get("fanout") is not None else None)
        for e in unfinished
    )
    for shard in sorted(expected.keys() | counts.keys()):
        if counts.get(shard, 0) != expected[shard]:
            yield (
                f"task {task_id}: open count {counts.get(shard, 0)} in shard {shard}"
                f" but {expected[shard]} unfinished executions there"
            )


def _slot_violations(task_id: str, task: Item, own: list[Item], slots: Item | None) -> Iterator[str]:
    if slots is None:
        yield f"task {task_id}: max_concurrency {task['max_concurrency']} but no slots item"
        return
    leased = sum(ExecutionStatus(e["status"]).holds_lease for e in own)
    active, limit = int(slots["active"]), int(slots["limit"])
    if active != leased:
        yield f"task {task_id}: {active} slots taken but {leased} executions hold a lease"
    if not 0 <= active <= limit:
        yield f"task {task_id}: {active} slots taken of a limit of {limit}"
    if limit != int(task["max_concurrency"]):
        yield f"task {task_id}: slots limit {limit} but max_concurrency {task['max_concurrency']}"


def _token_violations(by_kind: dict[str, list[Item]]) -> Iterator[str]:
    registrations = Counter(
        item["token_id"] for item in by_kind["registration"] if item.get("success") and item.get("token_id")
    )
    purged = len(_purged_agents(by_kind))
    for token in sorted(by_kind["registration_token"], key=lambda t: str(t["token_id"])):
        token_id, uses, max_uses = token["token_id"], int(token["uses"]), int(token["max_uses"])
        if uses > max_uses:
            yield f"token {token_id}: used {uses} times, more than its max_uses {max_uses}"
        if not 0 <= uses - registrations[token_id] <= purged:
            yield (
                f"token {token_id}: {uses} uses counted but {registrations[token_id]} registrations used it"
                + (f" ({purged} agents purged)" if purged else "")
            )


def _attempt_violations(by_kind: dict[str, list[Item]]) -> Iterator[str]:
    kept: dict[str, set[int]] = defaultdict(set)
    for item in by_kind["execution_attempt"]:
        kept[item["execution_id"]].add(int(item["attempt"]))
    for execution in by_kind["execution"]:
        execution_id, current = execution["execution_id"], int(execution["attempt"])
        status = ExecutionStatus(execution["status"])
        ended = set(range(1, current))  # a later attempt started: these ended
        # a result or a lost lease ends the current attempt; an expiry or a cancel may end one never leased
        may_have_ended = ended | ({current} if status.terminal else set())
        if status in (ExecutionStatus.SUCCEEDED, ExecutionStatus.FAILED, ExecutionStatus.TIMED_OUT):
            ended.add(current)
        own = kept.pop(execution_id, set())
        name = f"execution {execution_id}: {status.value} at attempt {current}"
        if missing := sorted(ended - own):
            yield f"{name} but no item of attempts {missing}"
        if extra := sorted(own - may_have_ended):
            yield f"{name} but items of attempts {extra}"
    for execution_id in sorted(kept):
        yield f"execution {execution_id}: attempt items but no execution item"


def _output_violations(by_kind: dict[str, list[Item]]) -> Iterator[str]:
    heads = {(item["pk"], _attempt_of(item["sk"])): int(item["seq"]) for item in by_kind["output_head"]}
    chunks: dict[tuple[str, int], set[int]] = defaultdict(set)
    for item in by_kind["output_chunk"]:
        chunks[(item["pk"], int(item["attempt"]))].add(int(item["seq"]))
    for pk, attempt in sorted(heads.keys() | chunks.keys()):
        head, seqs = heads.get((pk, attempt), 0), chunks.get((pk, attempt), set())
        if seqs != set(range(1, head + 1)):
            gaps = sorted(set(range(1, head + 1)) - seqs)
            yield f"{pk} attempt {attempt}: chunk head at {head} but chunks {sorted(seqs)} (missing {gaps})"


def _attempt_of(sort_key: str) -> int:
    return int(sort_key.rsplit("#", 1)[1])


def _agent_violations(by_kind: dict[str, list[Item]]) -> Iterator[str]:
    profiles = {item["agent_id"]: item for item in by_kind["agent"]}
    timers = {item["agent_id"] for item in by_kind["agent_purge"]}
    members = Counter(item["agent_id"] for item in by_kind["tag_member"])
    for agent_id, profile in sorted(profiles.items()):
        deleted = profile.get("deleted_at") is not None
        if deleted and not str(profile.get("gsi1pk", "")).startswith("AGENTSDELETED#"):
            yield f"agent {agent_id}: deleted but in the agent list ({profile.get('gsi1pk')})"
        if deleted and profile["state"] != "revoked":
            yield f"agent {agent_id}: deleted but {profile['state']}"
        if deleted and members[agent_id]:
            yield f"agent {agent_id}: deleted but a member of {members[agent_id]} tags"
        if deleted != (agent_id in timers):
            yield f"agent {agent_id}: {'deleted' if deleted else 'not deleted'} but " + (
                "no purge timer" if deleted else "a purge timer"
            )
    for agent_id in sorted(timers - profiles.keys()):
        yield f"agent {agent_id}: a purge timer but no profile"
    for agent_id in sorted(members.keys() - profiles.keys()):
        yield f"agent {agent_id}: a member of {members[agent_id]} tags but no profile"
    for kind in ("presence", "registration", "tunnel"):
        for item in by_kind[kind]:
            agent_id = str(item["pk"]).removeprefix("AGENT#")
            if str(item["pk"]).startswith("AGENT#") and agent_id not in profiles:
                yield f"agent {agent_id}: a {kind} item left by a purge"


def _purged_agents(by_kind: dict[str, list[Item]]) -> set[str]:
    """Agents deleted (their audit entry kept) whose profile is gone: purged."""
    profiles = {item["agent_id"] for item in by_kind["agent"]}
    deleted = {str(item["target_id"]) for item in by_kind["audit"] if item.get("action") == "agent.delete"}
    return deleted - profiles


def _release_violations(by_kind: dict[str, list[Item]]) -> Iterator[str]:
    for release in by_kind["release"]:
        name = f"release {release['version']} {release['platform']}"
        published = release.get("published_at") is not None
        if (release["status"] == "published") != published:
            yield f"{name}: {release['status']} but published_at is {release.get('published_at')}"


def _audit_violations(by_kind: dict[str, list[Item]]) -> Iterator[str]:
    entries: dict[tuple[str, str], list[Item]] = defaultdict(list)
    for entry in sorted(by_kind["audit"], key=lambda e: str(e["audit_id"])):
        if entry.get("success") is False:  # an attempt refused before it changed anything
            continue
        entries[(str(entry["action"]), str(entry["target_id"]))].append(entry)

    def count(action: str, target: str) -> int:
        return len(entries.get((action, target), []))

    def expect(what: str, action: str, target: str, wanted: int) -> Iterator[str]:
        found = count(action, target)
        if found != wanted:
            yield f"{what}: {found} {action} audit entries, expected {wanted}"

    tokens = {str(t["token_id"]): t for t in by_kind["registration_token"]}
    for token_id, token in sorted(tokens.items()):
        yield from expect(f"token {token_id}", f"{token['purpose']}_token.create", token_id, 1)
        yield from expect(
            f"token {token_id}", "token.revoke", token_id, int(token.get("revoked_at") is not None)
        )
    tasks = {str(t["task_id"]): t for t in by_kind["task"]}
    for task_id, task in sorted(tasks.items()):
        yield from expect(f"task {task_id}", "task.create", task_id, 1)
        yield from expect(
            f"task {task_id}", "task.cancel", task_id, int(task.get("cancelled_at") is not None)
        )
    tunnels = {str(t["tunnel_id"]): t for t in by_kind["tunnel"]}
    created_tunnels = {target for action, target in entries if action == "tunnel.create"}
    for tunnel_id in sorted(created_tunnels | tunnels.keys()):
        tunnel = tunnels.get(tunnel_id)
        yield from expect(f"tunnel {tunnel_id}", "tunnel.create", tunnel_id, 1)
        yield from expect(f"tunnel {tunnel_id}", "tunnel.delete", tunnel_id, int(tunnel is None))
        if tunnel is not None:
            yield from expect(f"tunnel {tunnel_id}", "tunnel.patch", tunnel_id, int(tunnel["version"]) - 1)
    agents = {str(a["agent_id"]): a for a in by_kind["agent"]}
    for agent_id, agent in sorted(agents.items()):
        if agent.get("deleted_at") is not None:  # revoked by its deletion (a revoke before it: its entry)
            if not count("agent.delete", agent_id):
                yield f"agent {agent_id}: deleted but no agent.delete audit entry"
        else:
            revoked = int(agent["state"] == "revoked")
            yield from expect(f"agent {agent_id}", "agent.revoke", agent_id, revoked)
        tagged = [e for e in entries.get(("agent.tags.replace", agent_id), []) if e["changes"]]
        if tagged and tagged[-1]["changes"]["tags"]["new"] != agent.get("tags", {}):
            newest = tagged[-1]["changes"]
            yield f"agent {agent_id}: tags {agent.get('tags')} but its newest tag entry set {newest}"
    policies = {str(p["collection"]): p for p in by_kind["relay_policy"]}
    for collection in sorted(policies.keys() | {t for a, t in entries if a == "collection.readers.set"}):
        policy, set_by = policies.get(collection), entries.get(("collection.readers.set", collection), [])
        if policy is None or not set_by or int(set_by[-1]["at"]) != int(policy["updated_at"]):
            readers = policy and policy["readers"]
            yield f"collection {collection}: read policy {readers} but {len(set_by)} entries"
    deleted_agents = {target for action, target in entries if action == "agent.delete"}  # purged later
    for agent_id in sorted(deleted_agents | agents.keys()):
        yield from expect(f"agent {agent_id}", "agent.purge", agent_id, int(agent_id not in agents))
    releases = {f"release/{r['version']}/{r['platform']}": r for r in by_kind["release"]}
    for resource, release in sorted(releases.items()):
        yield from expect(resource, "release.announce", resource, 1)
        yield from expect(resource, "release.publish", resource, int(release["status"] == "published"))
    yield from _release_key_violations(by_kind, entries)
    known = tokens.keys() | tasks.keys() | created_tunnels | agents.keys() | policies.keys() | deleted_agents
    known |= releases.keys() | {RELEASE_KEY_RESOURCE}
    for action, target in sorted(entries):
        if target not in known:
            yield f"{action} audit entry about {target}, which never was"


def _release_key_violations(
    by_kind: dict[str, list[Item]], entries: dict[tuple[str, str], list[Item]]
) -> Iterator[str]:
    """The release key is as its newest entry set it (set first, rotated after), or there is none."""
    key = next(iter(by_kind["release_key"]), None)
    set_by = [
        entry
        for action in ("release_key.set", "release_key.rotate")
        for entry in entries.get((action, RELEASE_KEY_RESOURCE), [])
    ]
    set_by.sort(key=lambda e: str(e["audit_id"]))
    firsts = len(entries.get(("release_key.set", RELEASE_KEY_RESOURCE), []))
    if key is None:
        if set_by:
            yield f"release key: none, but {len(set_by)} key audit entries"
        return
    if firsts != 1 or not set_by or set_by[-1]["changes"]["key_id"]["new"] != key["key_id"]:
        newest = set_by[-1]["changes"] if set_by else None
        yield f"release key {key['key_id']}: {firsts} set entries, the newest key entry {newest}"


def _all_items(client: Any, table_name: str) -> Iterator[Item]:
    deserializer = TypeDeserializer()
    request: dict[str, Any] = {"TableName": table_name, "ConsistentRead": True}
    for _ in range(MAX_PAGES):
        page = client.scan(**request)
        for raw in page.get("Items", []):
            yield {name: deserializer.deserialize(value) for name, value in raw.items()}
        if "LastEvaluatedKey" not in page:
            return
        request["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    raise RuntimeError(f"{table_name} holds more than {MAX_PAGES} pages: too large to check")
