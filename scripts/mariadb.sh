#!/usr/bin/env bash
# Makes sure a MariaDB server answers on 127.0.0.1:3306 as `root` with an empty password and has
# a `test` database (the brokered-credential tests create and drop users in it, and the `mariadb`
# client logs in as them): starts the installed server when it is stopped (mariadbd under
# start-stop-daemon, as the project's machines run it), installs Debian's packages when there is
# none. Idempotent.
set -euo pipefail

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

ready() {
    mariadb -h 127.0.0.1 -P 3306 -u root --connect-timeout=2 -e 'select 1' >/dev/null 2>&1
}

if ! command -v mariadbd >/dev/null 2>&1 || ! command -v mariadb >/dev/null 2>&1; then
    echo "installing MariaDB (for the brokered-credential tests)"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mariadb-server mariadb-client >/dev/null
fi

if ! ready; then
    if ! pgrep -x mariadbd >/dev/null 2>&1; then
        echo "starting MariaDB"
        as_root install -d -o mysql -g mysql /run/mysqld
        as_root start-stop-daemon --start --background --chuid mysql \
            --exec "$(command -v mariadbd)" -- --bind-address=127.0.0.1 --port=3306
    fi
    for _ in $(seq 1 60); do
        ready && break
        # A fresh install may allow root only over the Unix socket: open it to 127.0.0.1 with
        # the empty password the tests use.
        if as_root mariadb -u root -e 'select 1' >/dev/null 2>&1 && ! ready; then
            as_root mariadb -u root -e "CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY ''; GRANT ALL ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION; FLUSH PRIVILEGES;" || true
        fi
        sleep 1
    done
fi
if ! ready; then
    echo "MariaDB does not answer on 127.0.0.1:3306 as root with an empty password" >&2
    exit 1
fi
mariadb -h 127.0.0.1 -P 3306 -u root -e 'CREATE DATABASE IF NOT EXISTS test'
