#!/usr/bin/env bash
# Creates interop/schemathesis/.venv with the pinned, unmodified schemathesis CLI
# (requirements.txt), which the e2e test `schemathesis` runs against the admin API's own OpenAPI
# document. Idempotent: does nothing when the venv already matches requirements.txt.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv"
stamp="$venv/.requirements.sha256"
python="${PYTHON:-python3.11}"
want="$(sha256sum "$here/requirements.txt" | cut -d' ' -f1)"

if [[ -x "$venv/bin/schemathesis" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    exit 0
fi

if ! command -v "$python" >/dev/null 2>&1; then
    echo "setup.sh: $python not found (set PYTHON to a Python 3.11 interpreter)" >&2
    exit 1
fi

rm -rf "$venv"
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip >/dev/null
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/requirements.txt"
echo "$want" > "$stamp"
