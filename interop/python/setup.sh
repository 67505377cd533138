#!/usr/bin/env bash
# Creates interop/python/.venv with the pinned, unmodified py-spiffe client (requirements.txt).
# Idempotent: does nothing when the venv already matches requirements.txt.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec "$here/../pinned-venv.sh" "$here" python
