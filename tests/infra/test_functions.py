"""The functions: one per route group plus cleanup, python3.13 on arm64, own code, shared layers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aws_cdk.assertions import Match
from infra.constructs.functions import function_code

from fleetlink.api.functions import FUNCTIONS
from infra import constants
from tests.infra.conftest import Synthesized
from tests.infra.helpers import from_data_stack, only_resource, resources_of_type

pytestmark = [pytest.mark.infra, pytest.mark.xdist_group("cdk")]

FUNCTION_TYPE = "AWS::Lambda::Function"
NAMES = constants.FUNCTION_NAMES


def properties(app: Synthesized, name: str) -> dict[str, Any]:
    body: dict[str, Any] = app.resource(app.stacks.api.functions[name])["Properties"]
    return body


def relative_files(root: Path) -> set[str]:
    return {
        path.relative_to(root).as_posix()
        for path in root.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    }


def test_function_names_are_the_registry_entries() -> None:
    # Given the function registry
    # When the CDK app's function names are read
    # Then they are derived from it (a new entry gets its function)
    assert tuple(FUNCTIONS) == constants.FUNCTION_NAMES


def test_there_is_one_function_per_name(default_app: Synthesized) -> None:
    default_app.api.resource_count_is(FUNCTION_TYPE, len(NAMES))
    assert set(default_app.stacks.api.functions) == set(NAMES)
    default_app.api.all_resources_properties(
        FUNCTION_TYPE,
        Match.object_like({"Runtime": "python3.13", "Architectures": ["arm64"]}),
    )


@pytest.mark.parametrize("name", NAMES)
def test_function_runs_python_313_on_arm64(default_app: Synthesized, name: str) -> None:
    function = properties(default_app, name)
    assert (function["Runtime"], function["Architectures"]) == ("python3.13", ["arm64"])
    assert function["Handler"] == "handler.lambda_handler"


@pytest.mark.parametrize("name", NAMES)
def test_function_code_is_its_own_directory_only(default_app: Synthesized, name: str) -> None:
    # Given the function's staged code asset
    resource = default_app.resource(default_app.stacks.api.functions[name])
    staged = default_app.outdir / resource["Metadata"]["aws:asset:path"]
    source = constants.FUNCTIONS_DIR / name
    # Then it holds exactly functions/<name>, byte for byte (shared code comes from the layers)
    assert relative_files(staged) == relative_files(source)
    assert (staged / "handler.py").read_bytes() == (source / "handler.py").read_bytes()


@pytest.mark.parametrize("name", NAMES)
def test_function_uses_the_deps_and_shared_layers(default_app: Synthesized, name: str) -> None:
    layers = {
        Path(layer["Metadata"]["aws:asset:path"]).name: logical_id
        for logical_id, layer in resources_of_type(default_app.api_json, "AWS::Lambda::LayerVersion").items()
    }
    assert len(layers) == 2
    deps = default_app.logical_id(default_app.stacks.api.deps_layer)
    shared = default_app.logical_id(default_app.stacks.api.shared_layer)
    assert properties(default_app, name)["Layers"] == [{"Ref": deps}, {"Ref": shared}]


def test_layers_are_for_python_313_on_arm64(default_app: Synthesized) -> None:
    for layer in resources_of_type(default_app.api_json, "AWS::Lambda::LayerVersion").values():
        assert layer["Properties"]["CompatibleRuntimes"] == ["python3.13"]
        assert layer["Properties"]["CompatibleArchitectures"] == ["arm64"]


def test_shared_layer_holds_the_server_side_package(default_app: Synthesized) -> None:
    # Given the shared layer's staged asset
    layer = default_app.resource(default_app.stacks.api.shared_layer)
    staged = default_app.outdir / layer["Metadata"]["aws:asset:path"]
    files = relative_files(staged)
    # Then it is src/fleetlink laid out for /opt/python, byte for byte, without the node side
    table_py = "python/fleetlink/store/table.py"
    assert {"python/fleetlink/__init__.py", table_py} <= files
    assert (staged / table_py).read_bytes() == (constants.PACKAGE_DIR / "store/table.py").read_bytes()
    node_side = ("python/fleetlink/agent/", "python/fleetlink/local/", "python/fleetlink/cli/")
    assert not [f for f in files if f.startswith(node_side)]


@pytest.mark.parametrize("name", NAMES)
def test_function_table_name_is_the_table(default_app: Synthesized, name: str) -> None:
    table_id, _ = only_resource(default_app.data_json, "AWS::DynamoDB::Table")
    reference = properties(default_app, name)["Environment"]["Variables"]["TABLE_NAME"]
    assert from_data_stack(default_app, reference) == {"Ref": table_id}


@pytest.mark.parametrize("name", NAMES)
def test_function_reads_the_cursor_key_from_the_data_stack_secret(
    default_app: Synthesized, name: str
) -> None:
    # Given the function's environment
    variables = properties(default_app, name)["Environment"]["Variables"]
    secret_id, _ = only_resource(default_app.data_json, "AWS::SecretsManager::Secret")
    # Then it names the cursor key secret of the data stack, never the key itself
    assert from_data_stack(default_app, variables["FLEETLINK_CURSOR_KEY_SECRET_ARN"]) == {"Ref": secret_id}
    assert "FLEETLINK_CURSOR_KEY" not in variables


@pytest.mark.parametrize("name", NAMES)
def test_function_has_the_powertools_and_fleetlink_settings(default_app: Synthesized, name: str) -> None:
    variables = properties(default_app, name)["Environment"]["Variables"]
    assert {key: variables.get(key) for key in (*constants.COMMON_ENVIRONMENT, "POWERTOOLS_LOG_LEVEL")} == {
        "POWERTOOLS_SERVICE_NAME": "fleetlink",
        "POWERTOOLS_METRICS_NAMESPACE": "fleetlink",
        "POWERTOOLS_TRACER_CAPTURE_RESPONSE": "false",
        "FLEETLINK_OPERATOR_AUTH": "iam",
        "POWERTOOLS_LOG_LEVEL": "INFO",
    }
    assert variables["FLEETLINK_HEARTBEAT_INTERVAL_S"] == "60"


def test_settings_come_from_context(custom_app: Synthesized) -> None:
    # Given the app synthesized with log level, memory and heartbeat interval from context
    for name in NAMES:
        function = properties(custom_app, name)
        variables = function["Environment"]["Variables"]
        # Then every function carries them
        assert (variables["POWERTOOLS_LOG_LEVEL"], variables["FLEETLINK_HEARTBEAT_INTERVAL_S"]) == (
            "DEBUG",
            "120",
        )
        assert function["MemorySize"] == (768 if name == "heartbeat" else 1024)
        assert function["LoggingConfig"]["ApplicationLogLevel"] == "DEBUG"
        assert function["LoggingConfig"]["SystemLogLevel"] == "INFO"


@pytest.mark.parametrize("name", NAMES)
def test_memory_is_the_registry_entrys_by_default(default_app: Synthesized, name: str) -> None:
    assert properties(default_app, name)["MemorySize"] == (FUNCTIONS[name].memory_mb or 512)


def test_the_template_reserves_concurrency_capping_registration_and_relay_protecting_heartbeat(
    default_app: Synthesized,
) -> None:
    # Given the default synthesis; Then the exposed functions are capped, heartbeats have their own
    # share, and the rest use the unreserved pool
    reserved = {name: properties(default_app, name).get("ReservedConcurrentExecutions") for name in NAMES}
    assert {name: value for name, value in reserved.items() if value is not None} == {
        "registration": 50,
        "relay": 100,
        "heartbeat": 200,
    }


def test_reserved_concurrency_is_set_per_stage(custom_app: Synthesized) -> None:
    # Given a stage whose context sets relay to 20 and takes registration out of reservation
    reserved = {name: properties(custom_app, name).get("ReservedConcurrentExecutions") for name in NAMES}
    # Then the template follows the context over the registry
    assert (reserved["relay"], reserved["registration"], reserved["heartbeat"]) == (20, None, 200)


@pytest.mark.parametrize("name", [n for n in NAMES if n != "heartbeat"])
def test_function_is_traced_by_xray(default_app: Synthesized, name: str) -> None:
    assert properties(default_app, name)["TracingConfig"] == {"Mode": "Active"}


def test_heartbeats_are_not_traced_by_default(default_app: Synthesized) -> None:
    # Given the default context / Then the heartbeat function is PassThrough: Lambda takes no sampling
    # rule, and an HTTP API never sends a sampled trace header, so no heartbeat is traced
    assert properties(default_app, "heartbeat")["TracingConfig"] == {"Mode": "PassThrough"}


def test_heartbeat_tracing_from_context(custom_app: Synthesized) -> None:
    assert properties(custom_app, "heartbeat")["TracingConfig"] == {"Mode": "Active"}


@pytest.mark.parametrize("name", NAMES)
def test_logs_are_json_without_lambdas_per_invocation_lines(default_app: Synthesized, name: str) -> None:
    # Given the default context / When the function's logging configuration is read
    logging = properties(default_app, name)["LoggingConfig"]
    # Then Lambda's JSON format, system lines from WARN up (no START/END/REPORT), application from INFO
    assert {key: logging.get(key) for key in ("LogFormat", "SystemLogLevel", "ApplicationLogLevel")} == {
        "LogFormat": "JSON",
        "SystemLogLevel": "WARN",
        "ApplicationLogLevel": "INFO",
    }


@pytest.mark.parametrize("name", NAMES)
def test_function_logs_to_its_own_group_with_retention(default_app: Synthesized, name: str) -> None:
    # Given the function and its log group
    group = default_app.stacks.api.fleet_functions[name].log_group
    group_id = default_app.logical_id(group)
    # When its logging configuration is read
    logging = properties(default_app, name)["LoggingConfig"]
    # Then it writes to that group, kept 30 days by default, and retained if the stack goes
    assert logging["LogGroup"] == {"Ref": group_id}
    resource = default_app.api_json["Resources"][group_id]
    assert resource["Properties"]["RetentionInDays"] == 30
    assert resource["DeletionPolicy"] == "Retain"


def test_log_retention_comes_from_context(custom_app: Synthesized) -> None:
    groups = resources_of_type(custom_app.api_json, "AWS::Logs::LogGroup").values()
    assert {group["Properties"]["RetentionInDays"] for group in groups} == {90}


def test_cleanup_failures_go_to_the_dead_letter_queue(default_app: Synthesized) -> None:
    # Given the cleanup function's asynchronous invocation settings (EventBridge invokes it async)
    (config,) = resources_of_type(default_app.api_json, "AWS::Lambda::EventInvokeConfig").values()
    queue_id = default_app.logical_id(default_app.stacks.api.dead_letters.queue)
    cleanup_id = default_app.logical_id(default_app.stacks.api.functions["cleanup"])
    # Then a failed duty is retried, then lands in the dead-letter queue
    assert config["Properties"]["FunctionName"] == {"Ref": cleanup_id}
    assert config["Properties"]["Qualifier"] == "$LATEST"
    assert config["Properties"]["MaximumRetryAttempts"] == 2
    assert config["Properties"]["DestinationConfig"] == {
        "OnFailure": {"Destination": {"Fn::GetAtt": [queue_id, "Arn"]}}
    }


def test_with_snap_start_cleanup_failures_are_configured_on_the_alias(custom_app: Synthesized) -> None:
    # Given SnapStart on: EventBridge invokes the cleanup function's live alias
    (config,) = resources_of_type(custom_app.api_json, "AWS::Lambda::EventInvokeConfig").values()
    queue_id = custom_app.logical_id(custom_app.stacks.api.dead_letters.queue)
    # Then the asynchronous settings (retries, dead letters) are those of the alias
    alias_id = custom_app.logical_id(custom_app.stacks.api.fleet_functions["cleanup"].target)
    # (the alias ARN's last field: its name, "live")
    assert config["Properties"]["Qualifier"] == {"Fn::Select": [7, {"Fn::Split": [":", {"Ref": alias_id}]}]}
    assert config["Properties"]["DestinationConfig"] == {
        "OnFailure": {"Destination": {"Fn::GetAtt": [queue_id, "Arn"]}}
    }


def test_snap_start_is_off_by_default(default_app: Synthesized) -> None:
    assert not resources_of_type(default_app.api_json, "AWS::Lambda::Alias")
    for name in NAMES:
        assert "SnapStart" not in properties(default_app, name)


def test_snap_start_from_context_runs_every_caller_through_a_live_alias(custom_app: Synthesized) -> None:
    # Given the app synthesized with snap_start=true
    aliases = resources_of_type(custom_app.api_json, "AWS::Lambda::Alias")
    # Then every function snapshots its published versions, and has a "live" alias on its version
    assert len(aliases) == len(NAMES)
    for name in NAMES:
        assert properties(custom_app, name)["SnapStart"] == {"ApplyOn": "PublishedVersions"}
    assert {alias["Properties"]["Name"] for alias in aliases.values()} == {"live"}
    # And the API integrations invoke the aliases, never $LATEST
    alias_ids = set(aliases)
    for integration in resources_of_type(custom_app.api_json, "AWS::ApiGatewayV2::Integration").values():
        assert integration["Properties"]["IntegrationUri"] in [{"Ref": alias_id} for alias_id in alias_ids]
    # And so do the cleanup schedules
    cleanup_alias = custom_app.logical_id(custom_app.stacks.api.fleet_functions["cleanup"].target)
    for rule in resources_of_type(custom_app.api_json, "AWS::Events::Rule").values():
        assert [target["Arn"] for target in rule["Properties"]["Targets"]] == [{"Ref": cleanup_alias}]


def test_missing_function_directory_fails_clearly() -> None:
    with pytest.raises(FileNotFoundError, match=r"functions/no-such-function/handler\.py"):
        function_code("no-such-function")


@pytest.mark.parametrize("name", NAMES)
def test_timeout_is_the_registry_entry_s(default_app: Synthesized, name: str) -> None:
    # Given the function's registry entry
    # When its synthesized configuration is read
    # Then its timeout is the entry's (cleanup's duties get longer than a request)
    assert properties(default_app, name)["Timeout"] == FUNCTIONS[name].timeout_s
