#!/usr/bin/env bash
# Demo: a throwaway MariaDB master and replica with a ferrobus node between them.
#   master --(ferrobus syncer)--> ferrobus --(binlog server)--> replica
# The node is driven with `ferrobus ctl`; rows written on the master are shown arriving on
# the replica. Everything runs on 127.0.0.1 in a temp dir and is stopped afterwards (by pid,
# via trap), whatever happens. DEMO_KEEP=1 keeps the temp dir (logs, data).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

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
    stop_pids "${PIDS[@]}"
    if [ "$status" -ne 0 ]; then
        echo "== the demo failed; ferrobus log tails:"
        for n in n1 n2 n3; do
            echo "-- $n"
            tail -n 20 "$WORK/$n.log" 2>/dev/null || true
        done
    fi
    if [ "${DEMO_KEEP:-0}" = 1 ]; then
        echo "== kept $WORK"
    else
        rm -rf "$WORK"
    fi
    exit "$status"
}
trap cleanup EXIT INT TERM

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
    echo "+ ferrobus ctl --admin 127.0.0.1:$CTL_PORT $*" >&2
    "$BIN" ctl --admin "127.0.0.1:$CTL_PORT" "$@"
}

MASTER_PORT=$(free_port)
REPLICA_PORT=$(free_port)
declare -A ADMIN PEER SERVER NODE_PID
for n in n1 n2 n3; do
    ADMIN[$n]=$(free_port)
    PEER[$n]=$(free_port)
    SERVER[$n]=$(free_port)
done
CLUSTER="n1=127.0.0.1:${PEER[n1]},n2=127.0.0.1:${PEER[n2]},n3=127.0.0.1:${PEER[n3]}"

start_node() {
    local n=$1
    RUST_LOG=${RUST_LOG:-info} "$BIN" serve --name "$n" --peer-addr "127.0.0.1:${PEER[$n]}" \
        --initial-cluster "$CLUSTER" --data-dir "$WORK/$n" \
        --admin-addr "127.0.0.1:${ADMIN[$n]}" >>"$WORK/$n.log" 2>&1 &
    NODE_PID[$n]=$!
    PIDS+=($!)
}

# The name of the node that leads now, as node $1 sees it.
leader_of() {
    "$BIN" ctl --admin "127.0.0.1:${ADMIN[$1]}" --json cluster 2>/dev/null | python3 -c '
import json, sys
for m in json.load(sys.stdin)["data"]:
    if m.get("isLeader"):
        print(m["name"])'
}

wait_leader() {
    local asked=$1 leader=""
    for _ in $(seq 1 100); do
        leader=$(leader_of "$asked" || true)
        [ -n "$leader" ] && { echo "$leader"; return 0; }
        sleep 0.1
    done
    echo "no leader elected within 10 s" >&2
    return 1
}

echo "== starting MariaDB master (port $MASTER_PORT) and replica (port $REPLICA_PORT)"
start_mariadb master 1 "$MASTER_PORT"
start_mariadb replica 2 "$REPLICA_PORT"
sql "$MASTER_PORT" "SET sql_log_bin=0;
    CREATE USER repl@'%' IDENTIFIED BY 'replpass';
    GRANT REPLICATION SLAVE, BINLOG MONITOR, REPLICATION SLAVE ADMIN ON *.* TO repl@'%';"

echo "== starting a three-node ferrobus cluster ($CLUSTER)"
for n in n1 n2 n3; do start_node "$n"; done
LEADER=$(wait_leader n1)
FOLLOWER=n1
[ "$LEADER" = n1 ] && FOLLOWER=n2
echo "== $LEADER leads; driving the cluster through follower $FOLLOWER (it forwards to the leader)"
CTL_PORT=${ADMIN[$FOLLOWER]}
ctl cluster

ctl syncer start --syncer-id 101 --mysql-addr "127.0.0.1:$MASTER_PORT" \
    --mysql-user repl --mysql-password replpass
for n in n1 n2 n3; do
    CTL_PORT=${ADMIN[$n]} ctl server start --addr "127.0.0.1:${SERVER[$n]}" --user ferro \
        --password ferropass
done
CTL_PORT=${ADMIN[$FOLLOWER]}

echo "== pointing the replica at follower $FOLLOWER's binlog server (127.0.0.1:${SERVER[$FOLLOWER]}), GTID mode"
sql "$REPLICA_PORT" "CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=${SERVER[$FOLLOWER]},
    MASTER_USER='ferro', MASTER_PASSWORD='ferropass', MASTER_CONNECT_RETRY=1,
    MASTER_USE_GTID=slave_pos; START SLAVE;"

sql "$MASTER_PORT" "CREATE DATABASE demo;
    CREATE TABLE demo.greetings (id INT PRIMARY KEY, words VARCHAR(100), at DATETIME(6));"

write_and_watch() {
    local i=$1
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
}

for i in 1 2 3; do write_and_watch "$i"; done

echo "== kill -9 the leader ($LEADER); the others elect a new one, which resumes the syncer"
kill -KILL "${NODE_PID[$LEADER]}"
NEW_LEADER=$(wait_leader "$FOLLOWER")
echo "== $NEW_LEADER leads now"
for i in 4 5 6; do write_and_watch "$i"; done

echo "== on the replica"
sql "$REPLICA_PORT" "SELECT id, words FROM demo.greetings ORDER BY id"
echo "== status"
ctl cluster
ctl syncer status
ctl server status
slave_status "$REPLICA_PORT" | grep -E 'Slave_(IO|SQL)_Running:|Gtid_IO_Pos|Last_(IO|SQL)_Error'
echo "== demo done"
