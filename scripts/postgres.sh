#!/usr/bin/env bash
# Makes sure a PostgreSQL server answers on 127.0.0.1:5432 with trust authentication for local
# connections as `postgres` (the datastore tests connect as postgres@127.0.0.1/test): starts the
# installed cluster when it is stopped, installs Debian's package when there is none, and creates
# the `test` database when it is missing. Idempotent.
set -euo pipefail

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

as_postgres() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else sudo -u postgres "$@"; fi
}

ready() {
    pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null
}

if ! command -v pg_lsclusters >/dev/null 2>&1; then
    echo "installing PostgreSQL (for the datastore conformance suite)"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi

if ! ready; then
    # Start every installed cluster that is down (normally one: <version> main).
    pg_lsclusters --no-header | while read -r version cluster _port status _rest; do
        if [ "$status" != "online" ]; then
            echo "starting PostgreSQL cluster $version/$cluster"
            as_root pg_ctlcluster "$version" "$cluster" start
        fi
    done
fi

for _ in $(seq 1 30); do
    ready && break
    sleep 1
done
if ! ready; then
    echo "PostgreSQL does not answer on 127.0.0.1:5432" >&2
    exit 1
fi

# Trust authentication over TCP from localhost, as on the project's machines.
if ! psql -h 127.0.0.1 -U postgres -d postgres -Atqc 'select 1' >/dev/null 2>&1; then
    hba="$(as_postgres psql -Atqc 'show hba_file' 2>/dev/null || true)"
    if [ -z "$hba" ]; then
        hba="$(ls /etc/postgresql/*/main/pg_hba.conf | head -n 1)"
    fi
    echo "allowing trust authentication from 127.0.0.1 in $hba"
    as_root sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
    pg_lsclusters --no-header | while read -r version cluster _rest; do
        as_root pg_ctlcluster "$version" "$cluster" reload
    done
    sleep 1
fi

if ! psql -h 127.0.0.1 -U postgres -d postgres -Atqc "select 1 from pg_database where datname = 'test'" | grep -q 1; then
    psql -h 127.0.0.1 -U postgres -d postgres -qc 'create database test'
fi
