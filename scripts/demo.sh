#!/usr/bin/env bash
# Demo: a throwaway MariaDB master and replica with a ferrobus node between them.
#   master --(ferrobus syncer)--> ferrobus --(binlog server)--> replica
# The node is driven with `ferrobus ctl`; rows written on the master are shown arriving on
# the replica. Everything runs on 127.0.0.1 in a temp dir and is stopped afterwards (by pid,
# via trap), whatever happens. DEMO_KEEP=1 keeps the temp dir (logs, data).
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${FERROBUS_BIN:-./target/debug/ferrobus}
[ -x "$BIN" ] || cargo build -j2
scripts/install-test-deps.sh >/dev/null

MARIADBD=$(command -v mariadbd || echo /usr/sbin/mariadbd)
WORK=$(mktemp -d /tmp/ferrobus-demo.XXXXXX)
PIDS=()

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    echo
    echo "== stopping everything"
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 1 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
    done
    if [ "$status" -ne 0 ]; then
        echo "== the demo failed; ferrobus log tail:"
        tail -n 30 "$WORK/ferrobus.log" 2>/dev/null || true
    fi
    if [ "${DEMO_KEEP:-0}" = 1 ]; then
        echo "== kept $WORK"
    else
        rm -rf "$WORK"
    fi
    exit "$status"
}
trap cleanup EXIT INT TERM

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start_mariadb NAME SERVER_ID PORT
start_mariadb() {
    local name=$1 id=$2 port=$3 dir="$WORK/$1"
    mkdir -p "$dir"
    mariadb-install-db --no-defaults --user=root --datadir="$dir/data" \
        --auth-root-authentication-method=normal --skip-test-db >"$dir/install.log" 2>&1
    "$MARIADBD" --no-defaults --user=root --datadir="$dir/data" --socket="$dir/s.sock" \
        --pid-file="$dir/mariadbd.pid" --port="$port" --bind-address=127.0.0.1 \
        --server-id="$id" --log-bin="$dir/data/bin" --binlog-format=ROW \
        --binlog-checksum=CRC32 --gtid-strict-mode=1 --log-slave-updates=1 \
        --innodb-flush-log-at-trx-commit=2 --slave-parallel-threads=4 \
        --slave-parallel-mode=optimistic --max-allowed-packet=1G --skip-name-resolve \
        >"$dir/error.log" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 1 120); do
        sql "$port" "SELECT 1" >/dev/null 2>&1 && return 0
        sleep 0.5
    done
    echo "MariaDB $name did not start; error log:" >&2
    tail -n 30 "$dir/error.log" >&2
    return 1
}

# sql PORT STATEMENTS
sql() {
    mariadb --no-defaults --user=root --host=127.0.0.1 --port="$1" --batch --skip-column-names \
        -e "$2"
}

# slave_status PORT: SHOW SLAVE STATUS, one "Field: value" line each (column names on).
slave_status() {
    mariadb --no-defaults --user=root --host=127.0.0.1 --port="$1" -e "SHOW SLAVE STATUS\G"
}

ctl() {
    echo "+ ferrobus ctl $*" >&2
    "$BIN" ctl --admin "127.0.0.1:$ADMIN_PORT" "$@"
}

MASTER_PORT=$(free_port)
REPLICA_PORT=$(free_port)
ADMIN_PORT=$(free_port)
SERVER_PORT=$(free_port)

echo "== starting MariaDB master (port $MASTER_PORT) and replica (port $REPLICA_PORT)"
start_mariadb master 1 "$MASTER_PORT"
start_mariadb replica 2 "$REPLICA_PORT"
sql "$MASTER_PORT" "SET sql_log_bin=0;
    CREATE USER repl@'%' IDENTIFIED BY 'replpass';
    GRANT REPLICATION SLAVE, BINLOG MONITOR, REPLICATION SLAVE ADMIN ON *.* TO repl@'%';"

echo "== starting ferrobus (admin API 127.0.0.1:$ADMIN_PORT)"
RUST_LOG=${RUST_LOG:-info} "$BIN" serve --data-dir "$WORK/node" \
    --admin-addr "127.0.0.1:$ADMIN_PORT" >"$WORK/ferrobus.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 100); do
    "$BIN" ctl --admin "127.0.0.1:$ADMIN_PORT" health >/dev/null 2>&1 && break
    sleep 0.1
done
ctl health

ctl syncer start --syncer-id 101 --mysql-addr "127.0.0.1:$MASTER_PORT" \
    --mysql-user repl --mysql-password replpass
ctl server start --addr "127.0.0.1:$SERVER_PORT" --user ferro --password ferropass

echo "== pointing the replica at ferrobus (127.0.0.1:$SERVER_PORT), GTID mode"
sql "$REPLICA_PORT" "CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=$SERVER_PORT,
    MASTER_USER='ferro', MASTER_PASSWORD='ferropass', MASTER_CONNECT_RETRY=1,
    MASTER_USE_GTID=slave_pos; START SLAVE;"

sql "$MASTER_PORT" "CREATE DATABASE demo;
    CREATE TABLE demo.greetings (id INT PRIMARY KEY, words VARCHAR(100), at DATETIME(6));"

for i in 1 2 3 4 5; do
    words="hello number $i through ferrobus"
    sql "$MASTER_PORT" "INSERT INTO demo.greetings VALUES ($i, '$words', NOW(6));"
    echo "master : wrote   row $i ($words)"
    arrived=""
    for _ in $(seq 1 200); do
        arrived=$(sql "$REPLICA_PORT" "SELECT words FROM demo.greetings WHERE id = $i" 2>/dev/null || true)
        [ -n "$arrived" ] && break
        sleep 0.05
    done
    if [ -z "$arrived" ]; then
        echo "replica: row $i did not arrive within 10 s" >&2
        slave_status "$REPLICA_PORT" >&2 || true
        exit 1
    fi
    echo "replica: has    row $i ($arrived)"
done

echo "== on the replica"
sql "$REPLICA_PORT" "SELECT id, words FROM demo.greetings ORDER BY id"
echo "== status"
ctl syncer status
ctl server status
slave_status "$REPLICA_PORT" | grep -E 'Slave_(IO|SQL)_Running:|Gtid_IO_Pos|Last_(IO|SQL)_Error'
echo "== demo done"
