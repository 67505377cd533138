#!/usr/bin/env bash
# `sigil entry list --output json` at scale, with the real binaries: populates a SQLite datastore
# with N entries (default 1,000,000) through `sigil entry create --file` (batches of 1,000 over
# the admin API), restarts the server so that it starts on the populated store, then lists every
# entry and reports:
#   - the CLI's wall time and peak RSS (GNU time's maximum resident set size),
#   - the server's VmHWM and VmRSS from /proc/PID/status before and after the list,
#   - the number of entries and bytes the list wrote (checked equal to N entries).
#
# Usage: scripts/list_at_scale.sh [N]
#   SIGIL_BIN   the sigil binary (default: target/release/sigil; build it first, e.g.
#               `CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
#                cargo build --release -p sigil`)
#   WORK_DIR    where the server's data, config and the entries file go (default: a new
#               directory under /tmp, removed at the end unless KEEP=1)
# Needs: bash, python3 (writes the entries file), GNU time (/usr/bin/time).
set -euo pipefail

N="${1:-1000000}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SIGIL_BIN="${SIGIL_BIN:-$ROOT/target/release/sigil}"
WORK_DIR="${WORK_DIR:-$(mktemp -d /tmp/sigil-list-at-scale.XXXXXX)}"
PORT="${PORT:-18443}"

[[ -x "$SIGIL_BIN" ]] || { echo "error: no sigil binary at $SIGIL_BIN (set SIGIL_BIN)" >&2; exit 1; }
[[ -x /usr/bin/time ]] || { echo "error: GNU time (/usr/bin/time) is needed" >&2; exit 1; }

mkdir -p "$WORK_DIR/admin"
CONFIG="$WORK_DIR/server.toml"
SOCKET="$WORK_DIR/admin/admin.sock"
cat > "$CONFIG" <<EOF
[server]
trust_domain = "example.org"
bind_address = "127.0.0.1:$PORT"
data_dir = "$WORK_DIR/server"
admin_socket_path = "$SOCKET"
EOF

SERVER_PID=""
stop_server() { # SIGTERM, then SIGKILL after 60 s (said on stderr: a finding, not hidden)
  if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID"
    for _ in $(seq 1 600); do
      kill -0 "$SERVER_PID" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$SERVER_PID" 2>/dev/null; then
      echo "note: the server did not exit within 60 s of SIGTERM; killing it" >&2
      kill -KILL "$SERVER_PID"
    fi
    wait "$SERVER_PID" || true
  fi
  SERVER_PID=""
}
cleanup() {
  stop_server
  if [[ "${KEEP:-0}" != 1 ]]; then rm -rf "$WORK_DIR"; fi
}
trap cleanup EXIT

start_server() {
  "$SIGIL_BIN" server run -c "$CONFIG" >>"$WORK_DIR/server.log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 1 600); do
    if "$SIGIL_BIN" bundle show --admin-socket "$SOCKET" >/dev/null 2>&1; then return 0; fi
    kill -0 "$SERVER_PID" 2>/dev/null || { echo "error: the server exited; see $WORK_DIR/server.log" >&2; exit 1; }
    sleep 0.1
  done
  echo "error: the server's admin API did not answer within 60 s" >&2
  exit 1
}

mem() { # VmHWM and VmRSS of the server, in MiB
  awk '/^VmHWM|^VmRSS/ { printf "%s %.1f MiB  ", $1, $2 / 1024 }' "/proc/$SERVER_PID/status"
}

echo "list_at_scale: $N entries, binary $SIGIL_BIN, work dir $WORK_DIR"

# 1. The entries file: entry i under one of 1,000 parents, newline-delimited JSON.
ENTRIES="$WORK_DIR/entries.ndjson"
python3 - "$N" "$ENTRIES" <<'EOF'
import json, sys
n, path = int(sys.argv[1]), sys.argv[2]
with open(path, "w") as out:
    for i in range(n):
        out.write(json.dumps({
            "spiffe_id": f"spiffe://example.org/a{i % 1000}/w{i // 1000}",
            "parent_id": f"spiffe://example.org/sigil/agent/join_token/a{i % 1000}",
            "selectors": [f"unix:uid:{i}"],
            "owner": "team-scale",
        }, separators=(",", ":")) + "\n")
EOF

# 2. Populate through the admin API in batches of 1,000.
start_server
t0=$(date +%s.%N)
"$SIGIL_BIN" entry create --file "$ENTRIES" --admin-socket "$SOCKET" --output json >/dev/null
t1=$(date +%s.%N)
printf 'populate: %d entries via `sigil entry create --file` in %.1f s (%.0f entries/s)\n' \
  "$N" "$(echo "$t1 - $t0" | bc)" "$(echo "$N / ($t1 - $t0)" | bc -l)"
# The server applies the creations to its entry index from the change feed, after the CLI
# returns: this reading may be taken before it has caught up.
echo "server right after populating: $(mem)"

# 3. Restart, so the list is measured on a server that started on the populated store.
stop_server
t0=$(date +%s.%N)
start_server
t1=$(date +%s.%N)
printf 'restart with %d entries: %.1f s until the admin API answers\n' "$N" "$(echo "$t1 - $t0" | bc)"
sleep 2
echo "server before list: $(mem)"

# 4. The list.
OUT="$WORK_DIR/list.json"
/usr/bin/time -f '%e %M' -o "$WORK_DIR/time.txt" \
  "$SIGIL_BIN" entry list --output json --admin-socket "$SOCKET" >"$OUT"
read -r wall peak_kib <"$WORK_DIR/time.txt"
echo "server after list:  $(mem)"
bytes=$(stat -c %s "$OUT")
lines=$(wc -l <"$OUT")
count=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["entries"]))' "$OUT")
printf 'sigil entry list --output json: %.2f s wall, CLI peak RSS %.1f MiB, %d entries, %d lines, %d bytes\n' \
  "$wall" "$(echo "$peak_kib / 1024" | bc -l)" "$count" "$lines" "$bytes"
if [[ "$count" != "$N" ]]; then
  echo "error: the list holds $count entries, not $N" >&2
  exit 1
fi
