#!/usr/bin/env bash
# A/B of the binlog server's dump throughput on a store of small live entries (each
# transaction its own raft entry, as while a node follows a master live; a catch-up packs
# many transactions in one entry, so `BENCH_ONLY=dumps` measures mostly large entries).
#
#   scripts/bench/ab-dumps-small.sh OLD_BINARY NEW_BINARY
#
# Starts a throwaway MariaDB master (/tmp/ab, 127.0.0.1:26998), a single node of NEW on it
# (127.0.0.1:19700, binlog server :19701) that syncs while sysbench oltp_write_only runs at
# RATE (400) tps for SECS (60) s, then, 3 times, each binary in turn on that same data dir
# serving N (10) dump clients (scripts/bench/dumpclient, built by `make bench`): MiB/s and
# the node's CPU seconds per GiB sent. Needs MariaDB, sysbench and curl (`make deps`).
# Fixed ports and /tmp/ab (wiped at start): do not run it beside `make bench`.
set -u
A=/tmp/ab; rm -rf $A; mkdir -p $A
# Every process started here is stopped by pid, pass or fail.
trap 'for f in $A/node.pid $A/master.pid; do [ -f $f ] && kill $(cat $f) 2>/dev/null; done' EXIT
P=26998; M=$A/m
mariadb-install-db --no-defaults --user=root --datadir=$M/data --auth-root-authentication-method=normal --skip-test-db >/dev/null 2>&1
/usr/sbin/mariadbd --no-defaults --user=root --datadir=$M/data --socket=$M/s.sock --pid-file=$M/pid --port=$P --bind-address=127.0.0.1 --server-id=1 --log-bin=$M/data/bin --binlog-format=ROW --binlog-checksum=CRC32 --innodb-flush-log-at-trx-commit=0 --sync-binlog=0 > $M/err.log 2>&1 &
MP=$!; echo $MP > $A/master.pid
for i in $(seq 60); do mariadb --no-defaults -h127.0.0.1 -P$P -uroot -e 'select 1' >/dev/null 2>&1 && break; sleep 0.5; done
sql() { mariadb --no-defaults -h127.0.0.1 -P$P -uroot -N -e "$1"; }
sql "CREATE USER repl@'%' IDENTIFIED BY 'replpass'; GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO repl@'%'; CREATE DATABASE sbtest;"
SB="--db-driver=mysql --mysql-host=127.0.0.1 --mysql-port=$P --mysql-user=root --mysql-db=sbtest --tables=2 --table-size=10000"
sysbench oltp_write_only $SB prepare >/dev/null
B1=$1; B2=$2
start_node() { $1 serve --data-dir $A/d --admin-addr 127.0.0.1:19700 > $A/node-$(basename $1).log 2>&1 & echo $! > $A/node.pid; for i in $(seq 100); do curl -sf http://127.0.0.1:19700/health >/dev/null && break; sleep 0.1; done; }
stop_node() { kill $(cat $A/node.pid); wait $(cat $A/node.pid) 2>/dev/null; rm -f $A/node.pid; }
start_node $B2
curl -s -XPUT -d '{"syncer_id":1001,"mysql_addr":"127.0.0.1:26998","mysql_user":"repl","mysql_password":"replpass"}' http://127.0.0.1:19700/binlog/syncer/start >/dev/null
sleep 2
sysbench oltp_write_only $SB --threads=2 --rate=${RATE:-400} --time=${SECS:-60} run >/dev/null
sleep 3
curl -s -XPUT -d '{"addr":"127.0.0.1:19701","user":"ferro","password":"ferropass"}' http://127.0.0.1:19700/binlog/server/start >/dev/null
sql "SHOW BINARY LOGS"
curl -s http://127.0.0.1:19700/binlog/files
echo
stop_node
DC=$(cd "$(dirname "$0")/../.." && pwd)/target/bench-dumpclient/release/ferrobus-bench-dumpclient
for rep in 1 2 3; do
  for b in $B1 $B2; do
    start_node $b; sleep 1
    for i in $(seq 50); do (echo > /dev/tcp/127.0.0.1/19701) 2>/dev/null && break; sleep 0.1; done
    pid=$(cat $A/node.pid)
    c0=$(awk '{print $14+$15}' /proc/$pid/stat)
    out=$($DC 127.0.0.1:19701 ferro ferropass bin.000001 ${N:-10} $((rep*1000)) 2>>$A/dc.log)
    c1=$(awk '{print $14+$15}' /proc/$pid/stat)
    python3 -c "
import json,sys; o=json.loads('''$out'''); cpu=($c1-$c0)/$(getconf CLK_TCK)
print(f'rep $rep $(basename $b): {o[\"bytes\"]/2**20/o[\"seconds\"]:.0f} MiB/s, cpu {cpu:.2f} s, {cpu/(o[\"bytes\"]/2**30):.2f} s/GiB')"
    stop_node
  done
done
kill $MP; wait $MP 2>/dev/null; rm -f $A/master.pid
