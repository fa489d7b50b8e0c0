"""Stage and settings come from context (cdk.json or -c), checked; the stacks are environment-agnostic."""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
import pytest
from infra.app import stage_of
from infra.config import StageConfig

from tests.infra.conftest import Synthesized

pytestmark = [pytest.mark.infra, pytest.mark.xdist_group("cdk")]


def config_of(**context: Any) -> StageConfig:
    return StageConfig.from_context(cdk.App(context=context).node)


def test_stacks_are_environment_agnostic(default_app: Synthesized) -> None:
    environments = {default_app.stacks.data.environment, default_app.stacks.api.environment}
    assert environments == {"aws://unknown-account/unknown-region"}


def test_stage_defaults_to_dev_in_stack_names(default_app: Synthesized) -> None:
    names = (default_app.stacks.data.stack_name, default_app.stacks.api.stack_name)
    assert names == ("fleetlink-dev-data", "fleetlink-dev-api")


def test_stage_comes_from_context(custom_app: Synthesized) -> None:
    names = (custom_app.stacks.data.stack_name, custom_app.stacks.api.stack_name)
    assert names == ("fleetlink-prod-data", "fleetlink-prod-api")
    assert stage_of(cdk.App(context={"stage": "prod"})) == "prod"


def test_stage_that_cannot_be_a_stack_name_is_refused() -> None:
    with pytest.raises(ValueError, match="stage"):
        stage_of(cdk.App(context={"stage": "Prod_1"}))


def test_defaults_without_context() -> None:
    assert config_of() == StageConfig()
    assert (StageConfig().log_retention_days, StageConfig().cors_allowed_origins) == (30, ())


def test_context_strings_from_the_command_line_are_parsed() -> None:
    config = config_of(
        log_retention_days="14",
        throttle_rate_limit="50",
        tracing="false",
        snap_start="yes",
        cors_allowed_origins=" https://a.example , https://b.example ",
        alarm_email="ops@example.com",
    )
    assert config.log_retention_days == 14
    assert config.throttle_rate_limit == 50
    assert (config.tracing, config.snap_start) == (False, True)
    assert config.cors_allowed_origins == ("https://a.example", "https://b.example")
    assert config.alarm_email == "ops@example.com"


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("log_retention_days", "31", "log_retention_days"),
        ("log_level", "chatty", "log_level"),
        ("throttle_rate_limit", "0", "throttle"),
        ("throttle_burst_limit", "many", "throttle_burst_limit"),
        ("lambda_memory_mb", "64", "lambda_memory_mb"),
        ("alarm_email", "not-an-address", "alarm_email"),
        ("tracing", "maybe", "tracing"),
        ("system_log_level", "loud", "system_log_level"),
        ("access_log_format", "verbose", "access_log_format"),
        ("heartbeat_tracing", "sometimes", "heartbeat_tracing"),
        ("function_memory_mb", "heartbeat", "function_memory_mb"),
        ("function_memory_mb", "heartbeat=64", "function_memory_mb"),
    ],
)
def test_bad_context_is_refused_naming_the_key(key: str, value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        config_of(**{key: value})


def test_function_memory_from_context_wins_over_the_registry() -> None:
    # Given per-function memory from the command line and from cdk.json
    from_cli = config_of(function_memory_mb="heartbeat=256, tasks=1024")
    from_json = config_of(function_memory_mb={"heartbeat": 256})
    # Then it wins over the registry's entry, which wins over the stage default
    assert (from_cli.memory_mb("heartbeat", 512), from_cli.memory_mb("tasks", None)) == (256, 1024)
    assert from_json.memory_mb("heartbeat", 512) == 256
    assert (from_json.memory_mb("operator", 384), from_json.memory_mb("operator", None)) == (384, 512)
