"""cdk-nag (AwsSolutions) finds nothing unacknowledged; cfn-lint finds nothing in the templates; checkov
finds nothing beyond the rules reviewed in infra/checkov-reviewed.toml."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from infra.constructs.buckets import nag_resource

from fleetlink.api.functions import buckets
from tests.infra.conftest import Synthesized

pytestmark = [pytest.mark.infra, pytest.mark.xdist_group("cdk")]

CFN_LINT = Path(sys.executable).parent / "cfn-lint"

#: Every rule acknowledged somewhere, and why (the reasons themselves sit next to the constructs).
REVIEWED = {
    "AwsSolutions-L1": "python3.13 is pinned together with the deps layer's wheels",
    "AwsSolutions-IAM5[Resource::*]": "X-Ray has no resource-level permissions",
    "AwsSolutions-APIG4": "agent routes are authenticated by the Lambda (RFC 9421); health is public",
    "AwsSolutions-SQS3": "the queue is itself the dead-letter queue",
    "AwsSolutions-SMG4": "the cursor key is not rotated: a new value only turns open list cursors into 400s",
    "AwsSolutions-S1": "the releases bucket's access log bucket is not itself logged",
}
#: Functions presign links to single objects under their bucket's prefix (releases/, outputs/).
REVIEWED |= {
    f"AwsSolutions-IAM5[Resource::{nag_resource(stage, bucket)}]": f"presigned links under {bucket.prefix}"
    for stage in ("dev", "prod")
    for bucket in buckets().values()
}
#: Rules acknowledged per resource, by the start of their name.
REVIEWED_PREFIXES = {
    "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:execute-api:": "operator role policies: the * is "
    "one route's path parameter (any agent, task or tunnel id)",
}


def plugin_report(app: Synthesized) -> dict[str, Any]:
    reports: list[dict[str, Any]] = app.validation.get("pluginReports", [])
    (report,) = [r for r in reports if r["pluginName"] == "AwsSolutions"]
    return report


def test_cdk_nag_ran(any_app: Synthesized) -> None:
    # Given the app synthesized as `cdk synth` does
    # Then the AwsSolutions pack checked it (its report is in the cloud assembly)
    assert plugin_report(any_app)


def test_cdk_nag_has_no_unacknowledged_finding(any_app: Synthesized) -> None:
    # Given the AwsSolutions report
    report = plugin_report(any_app)
    findings = [
        f"{v['ruleName']} ({v.get('severity')}) at {[c['constructPath'] for c in v['violatingConstructs']]}"
        for v in report["violations"]
    ]
    # Then there is no finding, error or warning, that is not acknowledged, and synthesis succeeded
    assert findings == []
    assert report["conclusion"] == "success"
    assert any_app.synth_error is None


def test_every_acknowledgment_has_a_reason_and_is_a_reviewed_rule(any_app: Synthesized) -> None:
    acknowledged = plugin_report(any_app)["suppressedViolations"]
    for finding in acknowledged:
        assert len(finding["reason"].strip()) > 20, finding["ruleName"]
    for finding in acknowledged:
        name = finding["ruleName"]
        assert name in REVIEWED or any(name.startswith(prefix) for prefix in REVIEWED_PREFIXES), name


def test_no_blanket_acknowledgment_at_the_stack_or_app(any_app: Synthesized) -> None:
    stacks = {any_app.stacks.api.stack_name, any_app.stacks.data.stack_name}
    for finding in plugin_report(any_app)["suppressedViolations"]:
        assert finding["acknowledgedAt"] not in stacks, finding["ruleName"]


def test_cfn_lint_is_clean(any_app: Synthesized) -> None:
    # Given the synthesized templates
    templates = sorted(str(path) for path in any_app.outdir.glob("*.template.json"))
    assert len(templates) == 2
    # When cfn-lint checks them: errors, warnings and informational findings, except I1022 (prefer
    # Fn::Sub to Fn::Join), a matter of style in the intrinsics CDK generates
    command = [str(CFN_LINT), "--format", "parseable", "--include-checks", "I", "--ignore-checks", "I1022"]
    result = subprocess.run(
        [*command, "--", *templates],
        capture_output=True,
        text=True,
        check=False,
    )
    # Then it finds nothing
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


#: checkov lives in a virtualenv of its own (``make test`` creates it): its pins (boto3, packaging)
#: conflict with the project's.
CHECKOV = Path(__file__).resolve().parents[2] / ".venv-checkov" / "bin" / "checkov"
REVIEWED_CHECKOV = Path(__file__).resolve().parents[2] / "infra" / "checkov-reviewed.toml"


def test_checkov_finds_nothing_but_the_reviewed_rules(any_app: Synthesized) -> None:
    # Given the synthesized templates and the reviewed rules (each with its reason)
    if not CHECKOV.exists():
        if os.environ.get("CI"):
            pytest.fail("checkov is missing: `make test` installs it in .venv-checkov")
        pytest.skip("checkov is not installed (`make test` installs it in .venv-checkov)")
    reviewed = tomllib.loads(REVIEWED_CHECKOV.read_text())
    assert all(entry["reason"].strip() for entry in reviewed.values())
    templates = sorted(str(path) for path in any_app.outdir.glob("*.template.json"))
    # When checkov checks them, offline, with the reviewed rules skipped
    command = [str(CHECKOV), "--framework", "cloudformation", "--skip-download", "--quiet", "--compact"]
    command += ["--skip-check", ",".join(sorted(reviewed)), "-o", "json"]
    for template in templates:
        command += ["-f", template]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    # Then nothing else fails
    reports = json.loads(result.stdout)
    failed = [
        (check["check_id"], check["resource"])
        for report in (reports if isinstance(reports, list) else [reports])
        for check in report["results"]["failed_checks"]
    ]
    assert failed == []
