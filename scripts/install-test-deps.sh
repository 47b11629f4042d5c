#!/usr/bin/env bash
# Installs what the end-to-end tests need, only when it is missing (idempotent):
#   - Debian packages: mariadb-server, mariadb-client, sysbench
#   - a Python venv at .venv with python-mysql-replication, PyMySQL and cryptography (pinned)
# Runs as root without a terminal (CI). Prints what it did. Fails with a clear
# message when something cannot be installed. Never starts, stops or configures the
# system MariaDB instance: the tests run their own throwaway instances.
set -euo pipefail

cd "$(dirname "$0")/.."

# Versions checked against MariaDB 10.11 in GTID mode (blocking dump, MariaDB GTID events).
MYSQL_REPLICATION_VERSION="1.0.17"
PYMYSQL_VERSION="1.2.4"
# PyMySQL's caching_sha2_password full authentication (RSA) needs it.
CRYPTOGRAPHY_VERSION="50.0.2"
VENV_DIR=".venv"

say() { printf 'install-test-deps: %s\n' "$*"; }
die() { printf 'install-test-deps: ERROR: %s\n' "$*" >&2; exit 1; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "need root (or sudo) to run: $*"
    fi
}

APT_UPDATED=0
apt_install() {
    command -v apt-get >/dev/null 2>&1 || die "apt-get not found: install $* by hand (Debian 12 expected)"
    if [ "$APT_UPDATED" -eq 0 ]; then
        say "apt-get update"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq \
            || die "apt-get update failed"
        APT_UPDATED=1
    fi
    say "apt-get install $*"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" \
        || die "apt-get install $* failed"
}

# Finds mariadbd even when /usr/sbin is not on PATH (non-login root shells, CI).
have_mariadbd() {
    command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ]
}

# --- Debian packages --------------------------------------------------------------
missing=()
have_mariadbd && command -v mariadb-install-db >/dev/null 2>&1 || missing+=(mariadb-server)
command -v mariadb >/dev/null 2>&1 && command -v mariadb-binlog >/dev/null 2>&1 || missing+=(mariadb-client)
command -v sysbench >/dev/null 2>&1 || missing+=(sysbench)
if [ "${#missing[@]}" -gt 0 ]; then
    # The tests never use the system instance (Debian's postinst leaves it stopped here).
    apt_install "${missing[@]}"
else
    say "mariadb-server, mariadb-client, sysbench: already installed"
fi
have_mariadbd || die "mariadbd still not found after installing mariadb-server"
command -v mariadb >/dev/null 2>&1 || die "mariadb client still not found after installing mariadb-client"
command -v mariadb-binlog >/dev/null 2>&1 || die "mariadb-binlog still not found after installing mariadb-client"
command -v sysbench >/dev/null 2>&1 || die "sysbench still not found after installing it"

# --- Python venv --------------------------------------------------------------------
venv_ok() {
    [ -x "$VENV_DIR/bin/python" ] || return 1
    "$VENV_DIR/bin/python" - "$MYSQL_REPLICATION_VERSION" "$PYMYSQL_VERSION" "$CRYPTOGRAPHY_VERSION" <<'EOF' >/dev/null 2>&1
import sys
from importlib.metadata import version
import pymysqlreplication, pymysql, cryptography  # noqa: F401  (import must work, not only metadata)
sys.exit(0 if (version("mysql-replication"), version("PyMySQL"), version("cryptography")) == tuple(sys.argv[1:4]) else 1)
EOF
}

if venv_ok; then
    say "$VENV_DIR: already has mysql-replication $MYSQL_REPLICATION_VERSION, PyMySQL $PYMYSQL_VERSION, cryptography $CRYPTOGRAPHY_VERSION"
else
    command -v python3 >/dev/null 2>&1 || apt_install python3
    if [ ! -x "$VENV_DIR/bin/python" ]; then
        rm -rf "$VENV_DIR"
        say "creating venv $VENV_DIR"
        if ! python3 -m venv "$VENV_DIR" >/dev/null 2>&1; then
            # Debian's python3 ships venv/ensurepip separately; use Debian's interpreter then
            # (the python3 on PATH may be another build that python3-venv does not fix).
            rm -rf "$VENV_DIR"
            apt_install python3 python3-venv
            /usr/bin/python3 -m venv "$VENV_DIR" \
                || die "python3 -m venv $VENV_DIR failed even with Debian's python3-venv"
        fi
    fi
    say "pip install mysql-replication==$MYSQL_REPLICATION_VERSION PyMySQL==$PYMYSQL_VERSION cryptography==$CRYPTOGRAPHY_VERSION"
    "$VENV_DIR/bin/python" -m pip install -q --disable-pip-version-check \
        "mysql-replication==$MYSQL_REPLICATION_VERSION" "PyMySQL==$PYMYSQL_VERSION" \
        "cryptography==$CRYPTOGRAPHY_VERSION" \
        || die "pip install into $VENV_DIR failed"
    venv_ok || die "$VENV_DIR does not import pymysqlreplication/pymysql/cryptography after install"
fi

say "done"
