"""The served one-line installer: a POSIX shell script that carries ``release.manifest`` and
``release.node`` (standard library only) to the node and runs the bootstrap with ``python3``."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

from fleetlink.release import manifest, node

#: The modules the bootstrap runs, in the package layout they import each other by.
CARRIED_MODULES = {"fleetlink/release/manifest.py": manifest, "fleetlink/release/node.py": node}

HEADER = """#!/bin/sh
# fleetlink agent installer, served by {url}
#   curl -fsSL {url}/v1/agent/install.sh | sh -s -- --token <registration token> [--prefix /opt/fleetlink]
# Downloads the newest (or --version) release for this machine, checks its signature against the
# release key below (pinned on first install; a change must be signed by the pinned key), installs it
# under --prefix, registers with the token and starts the service. Safe to re-run. Needs python3 >= 3.11.
# Release key {key_id}:
{key_comment}
set -eu
command -v python3 >/dev/null 2>&1 || {{ echo "fleetlink: python3 (>= 3.11) is needed" >&2; exit 1; }}
python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {{
  echo "fleetlink: python3 >= 3.11 is needed" >&2; exit 1; }}
bootstrap=$(mktemp -d)
trap 'rm -rf "$bootstrap"' EXIT
mkdir -p "$bootstrap/fleetlink/release"
: > "$bootstrap/fleetlink/__init__.py"
: > "$bootstrap/fleetlink/release/__init__.py"
"""

FILE = """cat > "$bootstrap/{path}" <<'FLEETLINK_BOOTSTRAP_END'
{source}FLEETLINK_BOOTSTRAP_END
"""

#: The script's own directory comes first on ``sys.path``, so the carried package is the one imported.
RUN = """import sys

from fleetlink.release.node import bootstrap

sys.exit(bootstrap(sys.argv[1:], {url_literal}, {key_literal}))
"""


@cache
def _carried_files() -> str:
    return "".join(
        FILE.format(path=path, source=Path(str(module.__file__)).read_text(encoding="utf-8"))
        for path, module in CARRIED_MODULES.items()
    )


def render_install_script(url: str, key_id: str, public_key: str) -> str:
    """The install script for the API at ``url`` pinning the release key ``public_key``."""
    key_comment = "\n".join(f"#   {line}" for line in public_key.strip().splitlines())
    run = RUN.format(url_literal=json.dumps(url), key_literal=json.dumps(public_key))
    return (
        HEADER.format(url=url, key_id=key_id, key_comment=key_comment)
        + _carried_files()
        + FILE.format(path="install.py", source=run)
        + 'python3 "$bootstrap/install.py" "$@"\n'
    )
