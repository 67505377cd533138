#!/usr/bin/env bash
# Creates interop/schemathesis/.venv with the pinned, unmodified schemathesis CLI
# (requirements.txt), which the e2e test `schemathesis` runs against the admin API's own OpenAPI
# document. Idempotent: does nothing when the venv already matches requirements.txt.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec "$here/../pinned-venv.sh" "$here" schemathesis
