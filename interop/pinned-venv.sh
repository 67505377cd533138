#!/usr/bin/env bash
# Usage: pinned-venv.sh DIR PROGRAM
# Creates DIR/.venv with exactly the pinned packages of DIR/requirements.txt (third-party tools
# and clients, unmodified), unless DIR/.venv/bin/PROGRAM exists and the venv was built from the
# same requirements.txt. Used by each interop/<tool>/setup.sh.
set -euo pipefail

dir="$(cd "$1" && pwd)"
program="$2"
venv="$dir/.venv"
stamp="$venv/.requirements.sha256"
python="${PYTHON:-python3.11}"
want="$(sha256sum "$dir/requirements.txt" | cut -d' ' -f1)"

if [[ -x "$venv/bin/$program" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    exit 0
fi

if ! command -v "$python" >/dev/null 2>&1; then
    echo "pinned-venv.sh: $python not found (set PYTHON to a Python 3.11 interpreter)" >&2
    exit 1
fi

rm -rf "$venv"
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip >/dev/null
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$dir/requirements.txt"
echo "$want" > "$stamp"
