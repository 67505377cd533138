#!/usr/bin/env bash
# The whole test suite. Installs what the tests need (Python venvs with the pinned py-spiffe
# client and schemathesis, cargo-deny, the openssl CLI), checks formatting, lints and the
# dependency policy, builds once, then runs every Rust test: unit, property, conformance,
# end-to-end (the real `sigil` binary as separate processes) and interop (third-party clients).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v openssl >/dev/null 2>&1; then
    echo "installing openssl (for the X.509 verification tests)"
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && apt-get install -y -qq openssl >/dev/null
    else
        sudo apt-get update -qq && sudo apt-get install -y -qq openssl >/dev/null
    fi
fi

# PostgreSQL on 127.0.0.1:5432 for the datastore conformance suite: started where it is
# installed but stopped, installed (Debian's package) where it is missing.
./scripts/postgres.sh
# MariaDB on 127.0.0.1:3306 (root, empty password) for the brokered-credential tests, started
# or installed the same way; its `mariadb` client and PostgreSQL's `psql` are the clients those
# tests log in with.
./scripts/mariadb.sh

./interop/python/setup.sh
./interop/schemathesis/setup.sh
./interop/node/setup.sh

# Command-line tools pinned in scripts/ci-tools.txt, in their own venv (reused while the pins hold).
tools="$PWD/target/ci-tools"
want="$(sha256sum scripts/ci-tools.txt | cut -d' ' -f1)"
if [[ ! -x "$tools/bin/cargo-deny" || "$(cat "$tools/.stamp" 2>/dev/null)" != "$want" ]]; then
    echo "installing the pinned CI tools (scripts/ci-tools.txt)"
    rm -rf "$tools"
    python3 -m venv "$tools"
    "$tools/bin/python" -m pip install --quiet --disable-pip-version-check -r scripts/ci-tools.txt
    echo "$want" > "$tools/.stamp"
fi

export SIGIL_INTEROP_PYTHON="$PWD/interop/python/.venv/bin/python"
export SIGIL_REQUIRE_INTEROP=1

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# Dependency policy (deny.toml): banned crates, the crate boundaries of ARCHITECTURE.md, licenses
# and sources. Advisories need the network, so they are not checked here.
"$tools/bin/cargo-deny" --log-level error check bans licenses sources
cargo build --workspace --all-targets --locked
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
set +e
cargo test --workspace --locked --no-fail-fast -- --test-threads 2 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# One closing line over every test binary (cargo prints one summary per binary).
passed=$(grep -Eo 'test result: [a-zA-Z]+\. [0-9]+ passed' "$log" | awk '{s+=$4} END {print s+0}')
failed=$(grep -Eo '[0-9]+ failed;' "$log" | awk '{s+=$1} END {print s+0}')
ignored=$(grep -Eo '[0-9]+ ignored;' "$log" | awk '{s+=$1} END {print s+0}')
echo "tests: ${passed} passed, ${failed} failed, ${ignored} skipped"
exit "$status"
