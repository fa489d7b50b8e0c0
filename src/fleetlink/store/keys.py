"""Every key of the single table is built here, and nowhere else."""

from __future__ import annotations

import datetime
import hashlib

#: Fleet-wide lists are spread over this many partitions of a sparse index.
LIST_SHARDS = 8

AGENT_PROFILE_SK = "STATE#PROFILE"
AGENT_PRESENCE_SK = "STATE#PRESENCE"
AGENT_STATE_PREFIX = "STATE#"
REGISTRATION_PREFIX = "REG#"
AUDIT_PREFIX = "AUDIT#"
SINGLETON_SK = "#"
AGENT_PREFIX = "AGENT#"
#: The key readiness reads (never written): one Query proves the table answers.
READINESS_KEY = ("HEALTH#", SINGLETON_SK)


def shard_of(entity_id: str, shards: int = LIST_SHARDS) -> int:
    """Stable shard of an id (not Python's salted hash)."""
    return int.from_bytes(hashlib.blake2b(entity_id.encode(), digest_size=4).digest(), "big") % shards


def agent_pk(agent_id: str) -> str:
    return f"{AGENT_PREFIX}{agent_id}"


def agent_id_of_pk(pk: str) -> str:
    """The agent id an ``agent_pk`` was built from."""
    return pk.removeprefix(AGENT_PREFIX)


def registration_sk(event_id: str) -> str:
    return f"{REGISTRATION_PREFIX}{event_id}"


#: The audit log of a day is spread over this many partitions (written by id, read merged).
AUDIT_SHARDS = 4


def audit_day(at_ms: int) -> str:
    """The UTC day an audit entry belongs to, e.g. ``2026-12-06``."""
    return datetime.datetime.fromtimestamp(at_ms / 1000, datetime.UTC).strftime("%Y-%m-%d")


def audit_pk(day: str, shard: int) -> str:
    """One shard of one day of the fleet-wide audit log."""
    return f"{AUDIT_PREFIX}{day}#{shard}"


def audit_keys(audit_id: str, at_ms: int) -> tuple[str, str]:
    """(pk, sk) of an audit entry: its day's shard, sorted by its (time-ordered) id."""
    return audit_pk(audit_day(at_ms), shard_of(audit_id, AUDIT_SHARDS)), audit_id


def audit_resource_pk(target_id: str) -> str:
    """gsi1 partition of one resource's audit entries (sparse: only audit entries carry it)."""
    return f"AUDITOF#{target_id}"


def agent_list_pk(shard: int) -> str:
    """gsi1 partition of the fleet-wide agent list."""
    return f"AGENTS#{shard}"


def agent_list_keys(agent_id: str) -> tuple[str, str]:
    """(gsi1pk, gsi1sk) of an agent's profile."""
    return agent_list_pk(shard_of(agent_id)), agent_id


def evidence_pk(kind: str, value: str) -> str:
    """Agents ever registered with one piece of hardware evidence (``fpr`` fingerprint, ``mid`` machine
    id), hashed: fixed length, any characters. Evidence, never identity: many agents may share it."""
    return f"SEEN#{kind}#{hashlib.sha256(value.encode()).hexdigest()}"


def evidence_sk(agent_id: str) -> str:
    return f"AGENT#{agent_id}"


def token_pk(token_id: str) -> str:
    return f"TOKEN#{token_id}"


#: gsi1 partition of the token list (operator-minted, few).
TOKEN_LIST_PK = "TOKENS"  # noqa: S105 - a partition key


def token_list_keys(token_id: str) -> tuple[str, str]:
    """(gsi1pk, gsi1sk) of a token: listed newest first."""
    return TOKEN_LIST_PK, token_id


def nonce_pk(key_id: str, nonce: str) -> str:
    """A nonce spent under an agent id."""
    return f"NONCE#{key_id}#{nonce}"


def registration_nonce_pk(fingerprint: str, nonce: str) -> str:
    """A nonce spent by a registration (keyid = a fingerprint): apart from agents' nonces, so no
    fingerprint, whatever it looks like, can spend an agent's nonce."""
    return f"REGNONCE#{fingerprint}#{nonce}"


def tag_member_pk(key: str, value: str, shard: int) -> str:
    """Partition of one shard of the agents carrying tag key=value."""
    return f"TAG#{key}={value}#{shard}"


def tag_member_sk(agent_id: str) -> str:
    return f"{AGENT_PREFIX}{agent_id}"


def task_pk(task_id: str) -> str:
    return f"TASK#{task_id}"


TASK_SLOTS_SK = "SLOTS"


def task_list_keys(task_id: str, created_at_ms: int) -> tuple[str, str]:
    """(gsi1pk, gsi1sk): tasks are listed by month of creation, newest first."""
    return task_list_pk(created_at_ms), task_id


def task_list_pk(at_ms: int) -> str:
    month = datetime.datetime.fromtimestamp(at_ms / 1000, datetime.UTC).strftime("%Y-%m")
    return f"TASKS#{month}"


#: A task's counters and its executions under gsi3 are spread over min(this, executions) shards.
TASK_SHARDS = 8
TASK_FANOUT_SK = "FANOUT"
TASK_FANOUT_CHUNK_PREFIX = "FANOUT#"


def task_shards(fanout: int | None) -> int:
    """Shards of a task with ``fanout`` executions (None: written before fan-outs were counted)."""
    return min(TASK_SHARDS, fanout) if fanout else TASK_SHARDS


def task_shard(execution_id: str, fanout: int | None) -> int:
    return shard_of(execution_id, task_shards(fanout))


def fanout_chunk_sk(chunk: int) -> str:
    """One chunk of a large fan-out's executions still to write."""
    return f"{TASK_FANOUT_CHUNK_PREFIX}{chunk:05d}"


def fanout_due_keys(task_id: str, due_at_ms: int) -> tuple[str, str]:
    """(gsi4pk, gsi4sk) of an unfinished fan-out: when its writer's time is up."""
    return due_pk("fanout", shard_of(task_id)), f"{due_at_ms:013d}#{task_id}"


def idempotency_pk(actor: str, key: str) -> str:
    """A create under an Idempotency-Key, per operator (hashed: fixed length, any characters)."""
    digest = hashlib.sha256(f"{actor}\n{key}".encode()).hexdigest()
    return f"IDEM#{digest}"


def task_open_pk(task_id: str, shard: int) -> str:
    """One shard of the count of a task's unfinished executions (spreads a fan-out's writes)."""
    return f"TASKOPEN#{task_id}#{shard}"


def execution_pk(execution_id: str) -> str:
    return f"EXE#{execution_id}"


#: Under an execution's partition: its ended attempts and its live output (per attempt, in order).
ATTEMPT_PREFIX = "ATT#"
OUTPUT_PREFIX = "OUT#"
OUTPUT_HEAD_PREFIX = "OUTHEAD#"


def attempt_sk(attempt: int) -> str:
    return f"{ATTEMPT_PREFIX}{attempt:04d}"


def output_chunk_sk(attempt: int, seq: int) -> str:
    """Chunk ``seq`` of an attempt's live output: sorts by attempt, then sequence."""
    return f"{output_chunks_prefix(attempt)}{seq:08d}"


def output_chunks_prefix(attempt: int) -> str:
    return f"{OUTPUT_PREFIX}{attempt:04d}#"


def output_head_sk(attempt: int) -> str:
    """The last chunk applied for an attempt (its number and digest)."""
    return f"{OUTPUT_HEAD_PREFIX}{attempt:04d}"


#: The output bucket's one prefix (the functions' S3 grants are on it and nothing else).
OUTPUT_OBJECTS_PREFIX = "outputs/"


def output_object_key(execution_id: str, attempt: int, stream: str) -> str:
    """The S3 key of an attempt's complete output stream (gzip): one object per execution, attempt
    and stream, so a presigned link for it reaches nothing else."""
    return f"{OUTPUT_OBJECTS_PREFIX}{execution_id}/{attempt:04d}/{stream}.gz"


def queue_keys(agent_id: str, priority: int, execution_id: str) -> tuple[str, str]:
    """(gsi2pk, gsi2sk): ascending order = highest priority first, then oldest (ULIDs sort by time)."""
    return queue_pk(agent_id), f"{1000 - priority:04d}#{execution_id}"


def queue_pk(agent_id: str) -> str:
    return f"QUEUE#{agent_id}"


#: gsi2 sort keys of an agent's leased executions it has not started: after every queued one.
LEASED_QUEUE_PREFIX = "L#"


def leased_queue_keys(agent_id: str, execution_id: str) -> tuple[str, str]:
    """(gsi2pk, gsi2sk) of a leased execution not yet running: in its agent's queue partition, after
    the queued ones, so a lease whose answer the agent never got is found and handed to it again."""
    return queue_pk(agent_id), f"{LEASED_QUEUE_PREFIX}{execution_id}"


def agent_executions_keys(agent_id: str, execution_id: str) -> tuple[str, str]:
    """(gsi5pk, gsi5sk) of an execution among its agent's (ids are time-ordered: newest last)."""
    return f"AGENTEXE#{agent_id}", execution_id


def task_executions_keys(task_id: str, shard: int, agent_id: str, execution_id: str) -> tuple[str, str]:
    """(gsi3pk, gsi3sk) of an execution under one shard of its task."""
    return task_executions_pk(task_id, shard), f"{agent_id}#{execution_id}"


def task_executions_pk(task_id: str, shard: int) -> str:
    return f"TASKEXE#{task_id}#{shard}"


def due_keys(timer: str, execution_id: str, due_at_ms: int) -> tuple[str, str]:
    """(gsi4pk, gsi4sk): a timer, sharded by execution, ordered by when it is due."""
    return due_pk(timer, shard_of(execution_id)), f"{due_at_ms:013d}#{execution_id}"


def due_pk(timer: str, shard: int) -> str:
    return f"DUE#{timer}#{shard}"


# --- tunnels -------------------------------------------------------------------------------------

TUNNEL_PREFIX = "TUNNEL#"
TUNNEL_EVENT_PREFIX = "EVT#"


def tunnel_sk(tunnel_id: str) -> str:
    """A tunnel lives in its agent's partition: the agent's desired state is one Query."""
    return f"{TUNNEL_PREFIX}{tunnel_id}"


def tunnel_name_sk(provider: str, name: str) -> str:
    """The uniqueness guard of (agent, provider, name), in the agent's partition."""
    return f"TUNNELNAME#{provider}#{name}"


def tunnel_pk(tunnel_id: str) -> str:
    """A tunnel's own partition: the pointer to its agent (sk ``#``) and its events."""
    return f"{TUNNEL_PREFIX}{tunnel_id}"


def tunnel_list_keys(tunnel_id: str) -> tuple[str, str]:
    """(gsi1pk, gsi1sk): the fleet's tunnels, sharded by id."""
    return tunnel_list_pk(shard_of(tunnel_id)), tunnel_id


def tunnel_list_pk(shard: int) -> str:
    return f"TUNNELS#{shard}"


def tunnel_event_sk(created_at_ms: int, event_id: str) -> str:
    """Events sort by time within the tunnel's partition (newest first: read backwards)."""
    return f"{TUNNEL_EVENT_PREFIX}{created_at_ms:013d}#{event_id}"


def tunnel_event_fleet_sk(created_at_ms: int, event_id: str) -> str:
    return f"{created_at_ms:013d}#{event_id}"


def tunnel_events_day(at_ms: int) -> str:
    return datetime.datetime.fromtimestamp(at_ms / 1000, datetime.UTC).strftime("%Y-%m-%d")


def tunnel_events_pk(day: str, shard: int) -> str:
    """gsi3 partition of every tunnel event of one day (one shard of it)."""
    return f"TUNEVENTS#{day}#{shard}"


def tunnel_errors_pk(day: str, shard: int) -> str:
    """gsi2 partition of the error events of one day (one shard of it): sparse, errors only."""
    return f"TUNERRORS#{day}#{shard}"


# --- relay sync ---------------------------------------------------------------------------------

#: Joins the parts of a relay index sort key: a control character, which keys never contain, and
#: lower than any character they may contain, so ``a`` sorts before ``a/b`` and prefixes stay prefixes.
RELAY_SEPARATOR = "\x1f"
RELAY_SYNC_SK = "RELAY#SYNC"


def relay_record_pk(node_id: str, collection: str) -> str:
    """A node's records of one collection, by key (sort key: the record's key itself)."""
    return f"REC#{node_id}#{collection}"


def relay_fleet_pk(collection: str, shard: int) -> str:
    """gsi1 partition: one shard (by node) of a collection's records across the fleet, by key."""
    return f"RECKEY#{collection}#{shard}"


def relay_fleet_keys(collection: str, node_id: str, key: str) -> tuple[str, str]:
    """(gsi1pk, gsi1sk) of a record: key order across the fleet, so key prefixes are ranges."""
    return relay_fleet_pk(collection, shard_of(node_id)), f"{key}{RELAY_SEPARATOR}{node_id}"


def relay_changes_pk(collection: str, shard: int) -> str:
    """gsi2 partition: one shard (by node) of a collection's records by time of update."""
    return f"RECTIME#{collection}#{shard}"


def relay_changes_keys(collection: str, node_id: str, key: str, updated_at_ms: int) -> tuple[str, str]:
    """(gsi2pk, gsi2sk) of a record: update order, so ``updated_since`` is a range."""
    sort_key = RELAY_SEPARATOR.join((f"{updated_at_ms:013d}", node_id, key))
    return relay_changes_pk(collection, shard_of(node_id)), sort_key


def relay_changes_after(updated_since_ms: int) -> str:
    """The lowest gsi2sk of records updated after ``updated_since_ms``."""
    return f"{updated_since_ms + 1:013d}"


def relay_policy_pk(collection: str) -> str:
    """Who may read a collection (absent: the whole fleet)."""
    return f"RELAYCOL#{collection}"


# --- releases -----------------------------------------------------------------------------------

#: The release key the fleet pins (one item), and every release (one partition: a few per version).
RELEASE_KEY_PK = "RELEASEKEY"
RELEASES_PK = "RELEASES"


def release_sk(platform: str, version: str) -> str:
    """A release, under its platform: one platform's releases are a ``begins_with`` range."""
    return f"{platform}#{version}"


# --- decommissioning ----------------------------------------------------------------------------

#: The purge timer of a soft-deleted agent, in its partition (and on gsi4 by when it is due).
AGENT_PURGE_SK = "PURGE"
AGENT_PURGE_TIMER = "agent-purge"


def deleted_agent_list_keys(agent_id: str) -> tuple[str, str]:
    """(gsi1pk, gsi1sk) of a soft-deleted agent's profile: out of the agent list, in this one."""
    return deleted_agent_list_pk(shard_of(agent_id)), agent_id


def deleted_agent_list_pk(shard: int) -> str:
    return f"AGENTSDELETED#{shard}"


def agent_purge_due_keys(agent_id: str, due_at_ms: int) -> tuple[str, str]:
    """(gsi4pk, gsi4sk) of an agent's purge timer."""
    return due_pk(AGENT_PURGE_TIMER, shard_of(agent_id)), f"{due_at_ms:013d}#{agent_id}"
