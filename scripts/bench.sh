#!/usr/bin/env bash
# Benchmark: catch-up ingest of a >= 100 MB sysbench binlog into a fresh ferrobus node and
# into a fresh three-node cluster, next to `mariadb-binlog --read-from-remote-server --raw`
# fetching the same binlog; then, on that cluster, added replication lag, concurrent dump
# clients and failover. Regenerates BENCHMARKS.md. Run with `make bench` (~7 min, 2 cores).
#
#   1. builds the release binary and scripts/bench/dumpclient;
#   2. starts a throwaway MariaDB master (temp dir, free 127.0.0.1 port) and fills its binlog
#      with sysbench oltp_write_only until SHOW BINARY LOGS totals >= BENCH_BINLOG_MB;
#   3. scripts/bench/rounds.py runs BENCH_ROUNDS rounds, alternating the reference fetch and
#      a fresh ferrobus node syncing the whole binlog, then writes BENCHMARKS.md;
#   4. scripts/bench/cluster.py: the three-node sections, appended to BENCHMARKS.md.
#
# Every process it starts is stopped by pid from an EXIT trap, pass or fail. Knobs (env):
# BENCH_BINLOG_MB (100), BENCH_ROUNDS (5), BENCH_KEEP=1 keeps the temp dir, BENCH_TMP (/tmp)
# is where the temp dir goes (/dev/shm: every data dir in memory, to see what fsync costs);
# BENCH_MARIADB_TMP puts only the MariaDB instances' data dirs (master, replicas) there.
# BENCH_WARM_MB (4 x the binlog): MiB written to a scratch file and deleted right before each
# timed catch-up, reference and ferrobus alike, so that the run writes into memory the VM's
# host still backs (see warm_free_memory in scripts/bench/rounds.py); 0 turns it off.
#
# BENCH_ONLY=lag runs only the replication-lag section (BENCHMARKS.md is left alone): a small
# binlog (BENCH_BINLOG_MB defaults to 2), no single-node rounds, then BENCH_LAG_RUNS (1) runs
# for each binary of BENCH_LAG_BINS (default: the release build; given, nothing is built),
# alternating A B B A A B ..., each on a fresh cluster with fresh replicas, BENCH_LAG_SECONDS (60)
# of load each; one line per run and a median summary, all results as JSON in
# BENCH_LAG_JSON when set. E.g. to compare two builds:
#   BENCH_ONLY=lag BENCH_LAG_BINS="/tmp/a/ferrobus /tmp/b/ferrobus" BENCH_LAG_RUNS=2 \
#       scripts/bench.sh
# BENCH_ONLY=catchup runs only the three-node catch-up (the full-size binlog, BENCH_ROUNDS
# rounds; in each, the reference fetch then a fresh cluster of each binary of BENCH_BINS, or
# BENCH_LAG_BINS, or the release build, in reverse order every other round: going right
# after the reference is an edge) and prints the median ratio per binary.
# BENCH_ONLY=dumps runs only the concurrent dumps (the full-size binlog): a cluster of each
# binary of BENCH_BINS (or the release build) synced to it, then at each client count the
# master and every binary's follower in turn, 3 times; it prints MiB/s and server CPU per
# GiB sent, medians per server.
# It must not touch the system MariaDB instance, /etc/mysql or /run/mysqld.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

ONLY=${BENCH_ONLY:-all}
case "$ONLY" in
all) BINLOG_MB=${BENCH_BINLOG_MB:-100} ;;
lag) BINLOG_MB=${BENCH_BINLOG_MB:-2} ;;
catchup | dumps) BINLOG_MB=${BENCH_BINLOG_MB:-100} ;;
*) echo "bench: BENCH_ONLY must be lag, catchup or dumps (or unset)" >&2; exit 2 ;;
esac
BINS=${BENCH_BINS:-${BENCH_LAG_BINS:-}}
ROUNDS=${BENCH_ROUNDS:-5}
# sysbench stops when the binlog is big enough or after this long, whichever comes first.
LOAD_SECONDS_MAX=300
SYSBENCH_TABLES=4
SYSBENCH_TABLE_SIZE=10000
SYSBENCH_THREADS=4

BENCH_START=$(date +%s)
say() { printf 'bench: %s\n' "$*"; }

BIN=$PWD/target/release/ferrobus
DUMPCLIENT=$PWD/target/bench-dumpclient/release/ferrobus-bench-dumpclient
if [ "$ONLY" != all ] && [ -n "$BINS" ]; then
    for b in $BINS; do
        [ -x "$b" ] || { echo "bench: BENCH_BINS: $b is not an executable" >&2; exit 1; }
    done
else
    say "cargo build -j2 --release"
    cargo build -j2 --release
    [ -x "$BIN" ] || { echo "bench: $BIN missing after build" >&2; exit 1; }
fi
if [ "$ONLY" = all ] || [ "$ONLY" = dumps ]; then
    say "cargo build -j2 --release (scripts/bench/dumpclient)"
    CARGO_TARGET_DIR=$PWD/target/bench-dumpclient cargo build -j2 --release \
        --manifest-path scripts/bench/dumpclient/Cargo.toml
fi
for tool in mariadbd mariadb mariadb-install-db mariadb-binlog sysbench python3; do
    command -v "$tool" >/dev/null 2>&1 || [ -x "/usr/sbin/$tool" ] \
        || { echo "bench: $tool not found (run scripts/install-test-deps.sh)" >&2; exit 1; }
done
MARIADBD=$(command -v mariadbd || echo /usr/sbin/mariadbd)

WORK=$(mktemp -d "${BENCH_TMP:-/tmp}/ferrobus-bench.XXXXXX")
MWORK=$WORK
if [ -n "${BENCH_MARIADB_TMP:-}" ]; then
    MWORK=$(mktemp -d "$BENCH_MARIADB_TMP/ferrobus-bench-mariadb.XXXXXX")
fi
PIDS=()

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    # rounds.py writes the pid of the node it runs, and cluster.py one line per process it
    # starts (nodes, replicas, clients), so an interrupted section is stopped too. The
    # scripts are stopped first (they stop their own children), the master last.
    local extra=()
    if [ -s "$WORK/ferrobus.pid" ]; then
        extra+=("$(cat "$WORK/ferrobus.pid")")
    fi
    if [ -s "$WORK/cluster.pids" ]; then
        while read -r pid; do extra+=("$pid"); done <"$WORK/cluster.pids"
    fi
    PIDS=("${PIDS[@]:2}" "${extra[@]}" "${PIDS[@]:0:2}")
    stop_pids "${PIDS[@]}"
    if [ "$status" -ne 0 ]; then
        echo "bench: FAILED (exit $status); log tails from $WORK:" >&2
        for f in "$MWORK"/master/error.log "$WORK"/sysbench-*.log "$WORK"/round-*/ferrobus.log \
            "$WORK"/round-*/mariadb-binlog.log "$WORK"/cluster-round-*/n*.log \
            "$MWORK"/lag*/*/error.log "$WORK"/lag*/*.log "$WORK"/dumps/*.log \
            "$WORK"/failover/*.log; do
            [ -s "$f" ] || continue
            echo "---- $f" >&2
            tail -n 20 "$f" >&2
        done
    fi
    if [ "${BENCH_KEEP:-0}" = 1 ]; then
        echo "bench: kept $WORK $MWORK" >&2
    else
        rm -rf "$WORK" "$MWORK"
    fi
    exit "$status"
}
trap cleanup EXIT INT TERM

sql() {
    mariadb --no-defaults --user=root --host=127.0.0.1 --port="$PORT" --batch --skip-column-names \
        -e "$1"
}

# Sum of File_size over SHOW BINARY LOGS.
binlog_total_bytes() {
    sql "SHOW BINARY LOGS" | awk '{ s += $2 } END { printf "%d\n", s }'
}

PORT=$(free_port)
MDIR=$MWORK/master
mkdir -p "$MDIR"
say "MariaDB master on 127.0.0.1:$PORT in $MDIR"
mariadb-install-db --no-defaults --user=root --datadir="$MDIR/data" \
    --auth-root-authentication-method=normal --skip-test-db >"$MDIR/install.log" 2>&1
"$MARIADBD" --no-defaults --user=root --datadir="$MDIR/data" --socket="$MDIR/s.sock" \
    --pid-file="$MDIR/mariadbd.pid" --port="$PORT" --bind-address=127.0.0.1 --server-id=1 \
    --log-bin="$MDIR/data/bin" --binlog-format=ROW --binlog-checksum=CRC32 \
    --innodb-flush-log-at-trx-commit=0 --sync-binlog=0 --max-binlog-size=64M \
    --skip-name-resolve --max-connections=200 >"$MDIR/error.log" 2>&1 &
MASTER_PID=$!
PIDS+=("$MASTER_PID")
for _ in $(seq 1 120); do
    sql "SELECT 1" >/dev/null 2>&1 && break
    kill -0 "$MASTER_PID" 2>/dev/null || { echo "bench: mariadbd exited" >&2; exit 1; }
    sleep 0.5
done
sql "SELECT 1" >/dev/null
sql "SET sql_log_bin=0;
    CREATE USER repl@'%' IDENTIFIED BY 'replpass';
    GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO repl@'%';
    SET sql_log_bin=1;
    CREATE DATABASE sbtest;"

SB_ARGS=(--db-driver=mysql --mysql-host=127.0.0.1 --mysql-port="$PORT" --mysql-user=root
    --mysql-db=sbtest --tables="$SYSBENCH_TABLES" --table-size="$SYSBENCH_TABLE_SIZE")
say "sysbench oltp_write_only prepare ($SYSBENCH_TABLES tables x $SYSBENCH_TABLE_SIZE rows)"
sysbench oltp_write_only "${SB_ARGS[@]}" prepare >"$WORK/sysbench-prepare.log" 2>&1

TARGET_BYTES=$((BINLOG_MB * 1000 * 1000))
say "sysbench oltp_write_only run ($SYSBENCH_THREADS threads) until the binlog is >= $BINLOG_MB MB"
LOAD_START=$(date +%s)
sysbench oltp_write_only "${SB_ARGS[@]}" --threads="$SYSBENCH_THREADS" \
    --time="$LOAD_SECONDS_MAX" --report-interval=10 run >"$WORK/sysbench-run.log" 2>&1 &
SB_PID=$!
PIDS+=("$SB_PID")
while kill -0 "$SB_PID" 2>/dev/null; do
    [ "$(binlog_total_bytes)" -ge "$TARGET_BYTES" ] && break
    sleep 1
done
kill -TERM "$SB_PID" 2>/dev/null || true
wait "$SB_PID" 2>/dev/null || true
LOAD_SECONDS=$(($(date +%s) - LOAD_START))

# The binlog must be still before it is measured: wait until two reads agree.
prev=""
for _ in $(seq 1 30); do
    now=$(sql "SHOW MASTER STATUS" | awk '{ print $1, $2 }')
    [ -n "$now" ] && [ "$now" = "$prev" ] && break
    prev=$now
    sleep 1
done
read -r MASTER_FILE MASTER_POS <<<"$now"
# The load left the master's binlog and tablespaces dirty in the page cache; the kernel
# writes them back about 30 s later, in the middle of whichever runs come then (measured:
# catch-up rounds 5 and 6 took 1.5-2x as long as rounds 1-4, with the nodes' CPU up alike).
# Written back now, before anything is timed.
sync
TOTAL_BYTES=$(binlog_total_bytes)
# Freed right before each timed catch-up (scripts/bench/rounds.py warm_free_memory): enough
# for the reference's file and the three nodes' logs.
WARM_BYTES=$(( ${BENCH_WARM_MB:-$(( (4 * TOTAL_BYTES >> 20) + 1 ))} << 20 ))
FILE_COUNT=$(sql "SHOW BINARY LOGS" | wc -l)
FIRST_FILE=$(sql "SHOW BINARY LOGS" | head -n 1 | awk '{ print $1 }')
say "binlog: $TOTAL_BYTES bytes in $FILE_COUNT files ($FIRST_FILE .. $MASTER_FILE:$MASTER_POS), load took ${LOAD_SECONDS}s"
if [ "$TOTAL_BYTES" -lt "$TARGET_BYTES" ]; then
    echo "bench: binlog only $TOTAL_BYTES bytes after ${LOAD_SECONDS}s (wanted $TARGET_BYTES)" >&2
    exit 1
fi

if [ "$ONLY" != all ]; then
    case "$ONLY" in
    lag) say "replication lag only: ${BENCH_LAG_RUNS:-1} run(s) per binary" ;;
    catchup) say "three-node catch-up only: $ROUNDS round(s)" ;;
    dumps) say "concurrent dumps only" ;;
    esac
    python3 scripts/bench/cluster.py \
        --bin "$BIN" --dumpclient "$DUMPCLIENT" --work "$WORK" --mariadb-work "$MWORK" \
        --port "$PORT" --master-pid "$MASTER_PID" \
        --rounds "$ROUNDS" --first-file "$FIRST_FILE" --master-file "$MASTER_FILE" \
        --master-pos "$MASTER_POS" --total-bytes "$TOTAL_BYTES" --bench-start "$BENCH_START" \
        --only "$ONLY" --bins "$BINS" --lag-runs "${BENCH_LAG_RUNS:-1}" \
        --lag-seconds "${BENCH_LAG_SECONDS:-60}" --lag-json "${BENCH_LAG_JSON:-}" \
        --warm-bytes "$WARM_BYTES" &
    CLUSTER_PID=$!
    PIDS+=("$CLUSTER_PID")
    wait "$CLUSTER_PID"
    say "done in $(($(date +%s) - BENCH_START))s"
    exit 0
fi

# In the background so that a signal reaches the trap at once rather than after the rounds.
python3 scripts/bench/rounds.py \
    --bin "$BIN" --work "$WORK" --port "$PORT" --master-pid "$MASTER_PID" --rounds "$ROUNDS" \
    --first-file "$FIRST_FILE" --master-file "$MASTER_FILE" --master-pos "$MASTER_POS" \
    --total-bytes "$TOTAL_BYTES" --file-count "$FILE_COUNT" \
    --load-seconds "$LOAD_SECONDS" --bench-start "$BENCH_START" \
    --sysbench "tables=$SYSBENCH_TABLES table_size=$SYSBENCH_TABLE_SIZE threads=$SYSBENCH_THREADS" \
    --warm-bytes "$WARM_BYTES" --out BENCHMARKS.md &
ROUNDS_PID=$!
PIDS+=("$ROUNDS_PID")
wait "$ROUNDS_PID"

say "three-node cluster: catch-up, replication lag, concurrent dumps, failover"
python3 scripts/bench/cluster.py \
    --bin "$BIN" --dumpclient "$DUMPCLIENT" --work "$WORK" --mariadb-work "$MWORK" --port "$PORT" \
    --master-pid "$MASTER_PID" --rounds "$ROUNDS" --first-file "$FIRST_FILE" \
    --master-file "$MASTER_FILE" --master-pos "$MASTER_POS" --total-bytes "$TOTAL_BYTES" \
    --bench-start "$BENCH_START" --warm-bytes "$WARM_BYTES" --out BENCHMARKS.md &
CLUSTER_PID=$!
PIDS+=("$CLUSTER_PID")
wait "$CLUSTER_PID"
say "done in $(($(date +%s) - BENCH_START))s; wrote BENCHMARKS.md"
