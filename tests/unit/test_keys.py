"""Every key is built in store/keys.py: shapes and shard spread."""

from collections import Counter

from fleetlink.core.ids import IdPrefix, new_id
from fleetlink.store import keys


def test_shard_is_stable_and_in_range() -> None:
    agent_id = new_id(IdPrefix.AGENT)
    assert keys.shard_of(agent_id) == keys.shard_of(agent_id)
    assert 0 <= keys.shard_of(agent_id) < keys.LIST_SHARDS


def test_shards_spread_agents_evenly() -> None:
    # Given many agents / When sharded / Then no shard holds more than twice its fair share
    counts = Counter(keys.shard_of(new_id(IdPrefix.AGENT)) for _ in range(8000))
    assert len(counts) == keys.LIST_SHARDS
    assert max(counts.values()) < 2 * 8000 / keys.LIST_SHARDS


def test_evidence_key_has_fixed_length_whatever_the_fingerprint() -> None:
    assert len(keys.evidence_pk("fpr", "a" * 16)) == len(keys.evidence_pk("fpr", "b" * 256))


def test_registration_nonces_and_agent_nonces_never_share_a_key() -> None:
    assert keys.registration_nonce_pk("agt_x", "n") != keys.nonce_pk("agt_x", "n")


def test_profile_and_presence_share_the_agent_partition_under_one_prefix() -> None:
    assert keys.AGENT_PROFILE_SK.startswith(keys.AGENT_STATE_PREFIX)
    assert keys.AGENT_PRESENCE_SK.startswith(keys.AGENT_STATE_PREFIX)
    assert not keys.registration_sk("aud_x").startswith(keys.AGENT_STATE_PREFIX)
    assert not keys.audit_keys("aud_x", 0)[0].startswith(keys.AGENT_PREFIX)
