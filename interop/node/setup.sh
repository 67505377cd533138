#!/usr/bin/env bash
# Installs the pinned, unmodified JavaScript clients of package-lock.json (jose, openid-client
# with oauth4webapi, undici) into interop/node/node_modules.
# Idempotent: does nothing when they already match the lock file.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"
stamp="node_modules/.lock.sha256"
want="$(sha256sum package-lock.json | cut -d' ' -f1)"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    exit 0
fi
npm ci --no-audit --no-fund --silent
echo "$want" > "$stamp"
