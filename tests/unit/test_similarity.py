"""Hardware similarity scoring for re-registration."""

from fleetlink.core.agents.similarity import FIELD_WEIGHTS, similarity_score
from fleetlink.core.entities import Hardware

KNOWN = Hardware(
    machine_id="m-1",
    hostname="web-1",
    ip_address="10.0.0.5",
    mac_address="aa:bb:cc:dd:ee:ff",
    os="linux",
    arch="x86_64",
    cpu_model="Xeon",
    memory_mb=16384,
)


def test_identical_hardware_scores_100() -> None:
    # Given the same hardware twice / When scored / Then it is a perfect match
    assert similarity_score(KNOWN, KNOWN.model_copy()) == 100


def test_changed_machine_id_scores_0_whatever_else_matches() -> None:
    # Given everything equal but the machine id
    moved = KNOWN.model_copy(update={"machine_id": "m-2"})
    # When scored / Then it is another machine
    assert similarity_score(KNOWN, moved) == 0


def test_changed_ip_costs_only_its_weight() -> None:
    # Given a new DHCP lease
    renumbered = KNOWN.model_copy(update={"ip_address": "10.0.0.9"})
    # When scored
    score = similarity_score(KNOWN, renumbered)
    # Then only the ip's share is lost
    compared = ["machine_id", "mac_address", "hostname", "cpu_model", "arch", "os", "memory_mb", "ip_address"]
    total = sum(FIELD_WEIGHTS[name] for name in compared)
    assert score == round(100 * (total - FIELD_WEIGHTS["ip_address"]) / total)


def test_comparison_ignores_case_and_surrounding_space() -> None:
    # Given the same values written differently
    rewritten = KNOWN.model_copy(update={"hostname": " WEB-1 ", "mac_address": "AA:BB:CC:DD:EE:FF"})
    # When scored / Then they still match
    assert similarity_score(KNOWN, rewritten) == 100


def test_field_reported_by_one_side_only_counts_as_a_mismatch() -> None:
    # Given a field the new report adds
    richer = Hardware(**KNOWN.model_dump(), product_uuid="uuid-1")
    # When scored / Then the score drops below a perfect match
    assert 0 < similarity_score(KNOWN, richer) < 100
