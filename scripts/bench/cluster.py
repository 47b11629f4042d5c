#!/usr/bin/env python3
"""Three-node sections of `make bench` (called by scripts/bench.sh after rounds.py).

Given the still MariaDB master that scripts/bench.sh filled, on this one machine:
  catch-up   --rounds rounds alternating `mariadb-binlog --raw` of the whole binlog and a
             fresh three-node cluster syncing it (time from PUT /binlog/syncer/start on the
             leader until the leader's status shows the master's position). The last cluster
             stays up for the next sections.
  lag        two MariaDB replicas, one on the master, one on a follower's binlog server;
             sysbench oltp_write_only at a fixed --rate plus a heartbeat row every 10 ms
             (SYSDATE(6) stored in the row on the master); a trigger on each replica stamps
             SYSDATE(6) when its SQL thread applies the row (slave_run_triggers_for_rbr).
  dumps      scripts/bench/dumpclient: 1, 10, 50, 100 concurrent non-blocking dumps of the
             whole binlog from the master, then from the follower; aggregate MiB/s.
  failover   heartbeats continue on the master; kill -9 of the leader; time to a survivor
             reporting itself leader and to the new leader storing a transaction the master
             committed after the kill.
  RSS        VmHWM of every node before the kill.
Then it appends these sections to --out (rounds.py wrote the file).

Every process it starts is written to WORK/cluster.pids (one pid a line) so the shell's trap
can stop it, and is stopped here by pid on the way out. It must not touch anything outside
WORK except the report file, nor the master's existing data (it adds the lagdb and sblag
schemas).
"""

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rounds  # noqa: E402  (shared helpers: reference fetch, /proc readers, machine info)

MIB = 1024 * 1024
POLL_S = 0.010
HTTP_TIMEOUT_S = 2
LEADER_TIMEOUT_S = 60
CATCH_UP_TIMEOUT_S = 300
REPLICA_TIMEOUT_S = 300
FERRO_USER, FERRO_PASSWORD = "ferro", "ferropass"
REPL_USER, REPL_PASSWORD = "repl", "replpass"
SYNCER_ID = 1001

CATCH_UP_GOAL_MIN = 0.8
LAG_P99_EXTRA_GOAL_MS = 5.0
DUMP_GOAL_MIN = 1.0
RESUME_GOAL_S = 3.0
RSS_GOAL_MIB = 64

LAG_SECONDS = 30
# Lag runs of the whole benchmark, each with fresh replicas on the same cluster; the run
# with the median p99 extra is reported, next to every run's (one run's p99 moves with the
# machine's load of those seconds).
LAG_RUNS = 5
LAG_RATE_TPS = 100
LAG_THREADS = 2
LAG_TABLES = 2
LAG_TABLE_SIZE = 10000
HEARTBEAT_PERIOD_S = 0.010
# A heartbeat this much later through ferrobus than directly counts as slow (for the stall
# analysis in the report).
SLOW_EXTRA_MS = 10.0
# Heartbeats of the first second are left out: replicas and caches warm up.
LAG_WARMUP_ROWS = 100
DUMP_CLIENTS = [1, 10, 50, 100]
# Repetitions per client count, alternating which server goes first; medians are reported.
DUMP_REPS = 3
FAILOVER_BEATS = 2500
FAILOVER_KILL_AFTER_S = 3


class BenchError(Exception):
    pass


class Procs:
    """Every process this script starts, by pid, mirrored to WORK/cluster.pids."""

    def __init__(self, work):
        self.path = os.path.join(work, "cluster.pids")
        self.procs = []

    def add(self, proc):
        self.procs.append(proc)
        with open(self.path, "a") as f:
            f.write(f"{proc.pid}\n")
        return proc

    def stop_since(self, first):
        """Stops the processes started after the first `first` (one lag-only run's)."""
        run = self.procs[first:]
        for p in run:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in run:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def stop_all(self):
        self.stop_since(0)


def http(method, url, body=None, timeout=HTTP_TIMEOUT_S):
    return rounds.http(method, url, body, timeout)


def sql(port, query, stdin=None):
    """Runs SQL as root on 127.0.0.1:port; returns the rows as lists of strings."""
    cmd = ["mariadb", "--no-defaults", "--user=root", "--host=127.0.0.1", f"--port={port}",
           "--batch", "--skip-column-names"]
    if stdin is None:
        cmd += ["-e", query]
    r = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        raise BenchError(f"SQL on :{port} failed: {r.stderr.strip()} ({(query or stdin)[:200]})")
    return [line.split("\t") for line in r.stdout.splitlines()]


def seq_of(gtid_list, domain=0):
    """Sequence number of `domain` in a MariaDB GTID list ("0-1-42,1-2-7"), or 0."""
    for g in (gtid_list or "").split(","):
        parts = g.strip().split("-")
        if len(parts) == 3 and parts[0] == str(domain):
            return int(parts[2])
    return 0


def pct(values, p):
    """Nearest-rank percentile of a non-empty list."""
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(round(p / 100 * len(s) + 0.5)) - 1))
    return s[k]


# ---- the cluster -------------------------------------------------------------------------

class Node:
    def __init__(self, name, root):
        self.name = name
        self.peer_port = rounds.free_port()
        self.admin = f"127.0.0.1:{rounds.free_port()}"
        self.binlog_port = rounds.free_port()
        self.data_dir = os.path.join(root, name)
        self.proc = None

    def url(self, path):
        return f"http://{self.admin}{path}"

    def alive(self):
        return self.proc is not None and self.proc.poll() is None


class Cluster:
    def __init__(self, bin_path, root, procs, size=3):
        self.bin = bin_path
        self.root = root
        self.procs = procs
        self.nodes = [Node(f"n{i}", root) for i in range(1, size + 1)]
        initial = ",".join(f"{n.name}=127.0.0.1:{n.peer_port}" for n in self.nodes)
        env = dict(os.environ, RUST_LOG="warn")
        for n in self.nodes:
            os.makedirs(n.data_dir)
            with open(os.path.join(root, f"{n.name}.log"), "wb") as log:
                n.proc = procs.add(subprocess.Popen(
                    [self.bin, "serve", "--name", n.name, "--peer-addr",
                     f"127.0.0.1:{n.peer_port}", "--initial-cluster", initial,
                     "--data-dir", n.data_dir, "--admin-addr", n.admin],
                    stdout=log, stderr=subprocess.STDOUT, env=env))
        for n in self.nodes:
            rounds.wait_healthy(n.admin, n.proc)

    def node(self, name):
        return next(n for n in self.nodes if n.name == name)

    def leader(self, timeout_s=LEADER_TIMEOUT_S):
        """Name of the live leader that every live node names (admin URL known)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            seen = set()
            for n in self.nodes:
                if not n.alive():
                    continue
                seen.add(self.leader_seen_by(n))
            if len(seen) == 1:
                name = seen.pop()
                if name is not None and self.node(name).alive():
                    return name
            time.sleep(0.05)
        raise BenchError(f"no single leader within {timeout_s}s")

    def leader_seen_by(self, n, timeout=HTTP_TIMEOUT_S):
        try:
            code, reply = http("GET", n.url("/cluster"), timeout=timeout)
        except (OSError, ValueError):
            return None
        if code != 200:
            return None
        for m in reply.get("data") or []:
            if m.get("isLeader") and any(m.get("adminURLs") or []):
                return m.get("name")
        return None

    def stop(self):
        for n in self.nodes:
            if n.alive():
                n.proc.send_signal(signal.SIGTERM)
        for n in self.nodes:
            if n.proc is not None:
                try:
                    n.proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    n.proc.kill()
                    n.proc.wait()


def syncer_start(node, port, syncer_id=SYNCER_ID):
    body = {"syncer_id": syncer_id, "mysql_addr": f"127.0.0.1:{port}",
            "mysql_user": REPL_USER, "mysql_password": REPL_PASSWORD}
    code, reply = http("PUT", node.url("/binlog/syncer/start"), body)
    if code != 200:
        raise BenchError(f"syncer/start on {node.name} answered {code}: {reply}")


def syncer_status(node):
    code, reply = http("GET", node.url("/binlog/syncer/status"))
    if code != 200:
        raise BenchError(f"syncer/status on {node.name} answered {code}: {reply}")
    return reply["data"]


def wait_position(node, file, pos, timeout_s=CATCH_UP_TIMEOUT_S):
    deadline = time.monotonic() + timeout_s
    while True:
        st = syncer_status(node)
        if st.get("last_binlog_file") == file and st.get("last_file_position") == pos:
            return st
        if st.get("status") == "error":
            raise BenchError(f"syncer error on {node.name}: {st.get('last_error')}")
        if not node.alive():
            raise BenchError(f"{node.name} exited {node.proc.returncode} while syncing")
        if time.monotonic() > deadline:
            raise BenchError(f"{node.name} not at {file}:{pos} after {timeout_s}s: {st}")
        time.sleep(POLL_S)


def master_position(port):
    rows = sql(port, "SHOW MASTER STATUS")
    return rows[0][0], int(rows[0][1])


# ---- 1. catch-up -------------------------------------------------------------------------

def bins_of(args):
    """The binaries to compare (--bins), or --bin alone."""
    return args.lag_bins.split() if args.lag_bins else [args.bin]


def catch_up(args, procs, bins=None):
    """Each round: the reference fetch, then a fresh three-node cluster of each binary in
    `bins` (default: --bin) syncing the whole binlog, in the given order in odd rounds and
    the reverse in even ones (the binary right after the reference has an edge: of two
    builds, the one going second lost 5 of 6 rounds, and with the order swapped won 5 of 6).
    Returns the references, the runs (each with its "bin" and "ratio" to its round's
    reference) and the last cluster, still up."""
    bins = bins or [args.bin]
    refs, runs, cluster = [], [], None
    for i in range(args.rounds):
        rdir = os.path.join(args.work, f"cluster-round-{i + 1}")
        os.makedirs(rdir)
        r = rounds.run_reference(args, rdir)
        refs.append(r)
        order = list(enumerate(bins))
        if i % 2 == 1:
            order.reverse()
        for b, path in order:
            if cluster is not None:
                cluster.stop()
            cdir = rdir if len(bins) == 1 else os.path.join(rdir, f"bin-{b + 1}")
            os.makedirs(cdir, exist_ok=True)
            cluster = Cluster(path, cdir, procs)
            leader = cluster.node(cluster.leader())
            cpu0 = {n.name: rounds.cpu_seconds(n.proc.pid) for n in cluster.nodes}
            faults0 = sum(rounds.minor_faults(n.proc.pid) for n in cluster.nodes)
            sync0 = {n.name: log_sync_buckets(n) for n in cluster.nodes}
            warm_s = rounds.warm_free_memory(cdir, args.warm_bytes)
            machine0 = rounds.machine_cpu()
            t0 = time.monotonic()
            syncer_start(leader, args.port)
            st = wait_position(leader, args.master_file, args.master_pos)
            seconds = time.monotonic() - t0
            steal = rounds.steal_percent(machine0, rounds.machine_cpu())
            cpu = {n.name: rounds.cpu_seconds(n.proc.pid) - cpu0[n.name]
                   for n in cluster.nodes}
            faults = sum(rounds.minor_faults(n.proc.pid) for n in cluster.nodes) - faults0
            log_sync = {n.name: log_sync_between(sync0[n.name], log_sync_buckets(n))
                        for n in cluster.nodes}
            run = {"seconds": seconds, "mib_s": args.total_bytes / MIB / seconds,
                   "faults": faults, "log_sync": log_sync,
                   "events": st["events"], "leader": leader.name, "cpu": cpu,
                   "leader_threads": rounds.thread_cpu(leader.proc.pid), "bin": path,
                   "steal_pct": steal}
            run["ratio"] = run["mib_s"] / r["mib_s"]
            runs.append(run)
            print(f"bench: cluster round {i + 1}: reference {r['mib_s']:.1f} MiB/s, three "
                  f"nodes {run['mib_s']:.1f} MiB/s ({seconds:.2f} s, leader {leader.name}"
                  + (f", bin {path}" if len(bins) > 1 else "")
                  + f"), ratio {run['ratio']:.2f}; cpu "
                  + " ".join(f"{k} {v:.1f}" for k, v in sorted(cpu.items()))
                  + f" s; minor faults {faults}; steal {steal:.0f} %; warm-up {warm_s:.2f} s; "
                  + "log syncs "
                  + " ".join(f"{k} {v['count']} p50 {v[50]:.1f} p99 {v[99]:.1f} ms"
                             for k, v in sorted(log_sync.items()) if v),
                  flush=True)
    return refs, runs, cluster


def catch_up_only(args, procs):
    """--only catchup: the three-node catch-up alone, --rounds rounds, each binary of
    --bins after the same round's reference; prints the median ratio per binary."""
    bins = bins_of(args)
    _refs, runs, _cluster = catch_up(args, procs, bins)
    print("bench: catch-up-only summary (median ratio to mariadb-binlog --raw per binary)",
          flush=True)
    for path in bins:
        ratios = [r["ratio"] for r in runs if r["bin"] == path]
        cpus = [sum(r["cpu"].values()) for r in runs if r["bin"] == path]
        print(f"bench:   {path}: ratio {statistics.median(ratios):.2f} (each: "
              + " ".join(f"{x:.2f}" for x in ratios)
              + f"), node cpu s {statistics.median(cpus):.2f}, minor faults "
              + f"{statistics.median(r['faults'] for r in runs if r['bin'] == path):.0f}",
              flush=True)


# ---- 2. replication lag ------------------------------------------------------------------

class Replica:
    def __init__(self, name, root, server_id, procs):
        self.name = name
        self.port = rounds.free_port()
        d = os.path.join(root, name)
        os.makedirs(d)
        with open(os.path.join(d, "install.log"), "wb") as log:
            subprocess.run(["mariadb-install-db", "--no-defaults", "--user=root",
                            f"--datadir={d}/data", "--auth-root-authentication-method=normal",
                            "--skip-test-db"], stdout=log, stderr=subprocess.STDOUT, check=True)
        mariadbd = "/usr/sbin/mariadbd" if os.path.exists("/usr/sbin/mariadbd") else "mariadbd"
        self.log = open(os.path.join(d, "error.log"), "wb")
        self.proc = procs.add(subprocess.Popen(
            [mariadbd, "--no-defaults", "--user=root", f"--datadir={d}/data",
             f"--socket={d}/s.sock", f"--pid-file={d}/mariadbd.pid", f"--port={self.port}",
             "--bind-address=127.0.0.1", f"--server-id={server_id}", "--skip-slave-start",
             f"--relay-log={d}/relay", "--slave-run-triggers-for-rbr=YES",
             "--innodb-flush-log-at-trx-commit=2", "--innodb-buffer-pool-size=128M",
             "--skip-name-resolve"], stdout=self.log, stderr=subprocess.STDOUT))
        deadline = time.monotonic() + 60
        while True:
            try:
                sql(self.port, "SELECT 1")
                break
            except BenchError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise BenchError(f"replica {name} did not start (see {d}/error.log)")
                time.sleep(0.3)

    def attach(self, port, user, password, gtid):
        sql(self.port, f"""
            CREATE DATABASE lagdb;
            CREATE TABLE lagdb.hb (id INT PRIMARY KEY, ts DATETIME(6) NOT NULL);
            CREATE TABLE lagdb.arrival (id INT PRIMARY KEY, ts DATETIME(6) NOT NULL,
                                        arrived DATETIME(6) NOT NULL);
            CREATE TRIGGER lagdb.hb_arrival AFTER INSERT ON lagdb.hb FOR EACH ROW
                INSERT INTO lagdb.arrival VALUES (NEW.id, NEW.ts, SYSDATE(6));
            SET GLOBAL gtid_slave_pos = '{gtid}';
            CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT={port},
                MASTER_USER='{user}', MASTER_PASSWORD='{password}', MASTER_CONNECT_RETRY=1,
                MASTER_USE_GTID=slave_pos;
            START SLAVE;""")

    def slave_status(self):
        cmd = ["mariadb", "--no-defaults", "--user=root", "--host=127.0.0.1",
               f"--port={self.port}", "-e", "SHOW SLAVE STATUS\\G"]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout
        st = {}
        for line in out.splitlines():
            if ":" in line:
                k, v = line.split(":", 1)
                st[k.strip()] = v.strip()
        return st

    def wait_gtid(self, gtid, timeout_s=REPLICA_TIMEOUT_S):
        want = seq_of(gtid)
        deadline = time.monotonic() + timeout_s
        while True:
            pos = sql(self.port, "SELECT @@GLOBAL.gtid_slave_pos")[0][0]
            if seq_of(pos) >= want:
                return
            st = self.slave_status()
            if st.get("Last_SQL_Error") or st.get("Slave_SQL_Running") == "No":
                raise BenchError(f"replica {self.name} stopped: {st.get('Last_SQL_Error')} "
                                 f"{st.get('Last_IO_Error')}")
            if time.monotonic() > deadline:
                raise BenchError(f"replica {self.name} at {pos}, wanted {gtid}: "
                                 f"IO {st.get('Slave_IO_Running')} {st.get('Last_IO_Error')}")
            time.sleep(0.2)

    def arrivals(self, min_id=0):
        rows = sql(self.port, "SELECT id, TIMESTAMPDIFF(MICROSECOND, ts, arrived), "
                              "UNIX_TIMESTAMP(arrived) FROM lagdb.arrival "
                              f"WHERE id > {min_id} ORDER BY id")
        return {int(r[0]): (int(r[1]) / 1000.0, float(r[2])) for r in rows}


BEAT_PROC = """
SET sql_log_bin = 0;
CREATE DATABASE lagdb;
CREATE TABLE lagdb.hb (id INT AUTO_INCREMENT PRIMARY KEY, ts DATETIME(6) NOT NULL);
DELIMITER //
CREATE PROCEDURE lagdb.beat(n INT, period_s DOUBLE)
BEGIN
  DECLARE i INT DEFAULT 0;
  WHILE i < n DO
    INSERT INTO lagdb.hb (ts) VALUES (SYSDATE(6));
    DO SLEEP(period_s);
    SET i = i + 1;
  END WHILE;
END//
DELIMITER ;
SET sql_log_bin = 1;
"""


def start_beats(args, procs, count, root, tag):
    """CALL lagdb.beat in a background client: one autocommitted row every 10 ms."""
    log = open(os.path.join(root, f"beat-{tag}.log"), "wb")
    return procs.add(subprocess.Popen(
        ["mariadb", "--no-defaults", "--user=root", "--host=127.0.0.1", f"--port={args.port}",
         "-e", f"CALL lagdb.beat({count}, {HEARTBEAT_PERIOD_S})"],
        stdout=log, stderr=subprocess.STDOUT))


def start_binlog_server(n):
    code, reply = http("PUT", n.url("/binlog/server/start"),
                       {"addr": f"127.0.0.1:{n.binlog_port}", "user": FERRO_USER,
                        "password": FERRO_PASSWORD})
    # A later run on the same cluster finds it serving already (409).
    if code != 200 and not (code == 409 and "already running" in str(reply)):
        raise BenchError(f"binlog server start on {n.name}: {code} {reply}")


def lag(args, procs, cluster, root_name="lag", seconds=LAG_SECONDS):
    root = os.path.join(args.work, root_name)
    os.makedirs(root)
    leader = cluster.leader()
    follower = next(n for n in cluster.nodes if n.name != leader and n.alive())
    lead = cluster.node(leader)
    for n in (follower, lead):
        start_binlog_server(n)
    # Repeated lag runs (--only lag) share the master: the heartbeat procedure is made once,
    # and sysbench's schema is dropped so the new replicas receive it afresh.
    if not sql(args.port, "SHOW DATABASES LIKE 'lagdb'"):
        sql(args.port, None, stdin=BEAT_PROC)
    sql(args.port, "DROP DATABASE IF EXISTS sblag")
    gtid = sql(args.port, "SELECT @@GLOBAL.gtid_binlog_pos")[0][0]
    # The replicas' data dirs go with the master's (--mariadb-work).
    mroot = os.path.join(args.mariadb_work, os.path.basename(root))
    os.makedirs(mroot, exist_ok=True)
    direct = Replica("replica-direct", mroot, 11, procs)
    via = Replica("replica-ferrobus", mroot, 12, procs)
    on_leader = Replica("replica-leader", mroot, 13, procs)
    direct.attach(args.port, REPL_USER, REPL_PASSWORD, gtid)
    via.attach(follower.binlog_port, FERRO_USER, FERRO_PASSWORD, gtid)
    on_leader.attach(lead.binlog_port, FERRO_USER, FERRO_PASSWORD, gtid)
    replicas = (direct, via, on_leader)

    sql(args.port, "CREATE DATABASE sblag")
    sb = ["sysbench", "oltp_write_only", "--db-driver=mysql", "--mysql-host=127.0.0.1",
          f"--mysql-port={args.port}", "--mysql-user=root", "--mysql-db=sblag",
          f"--tables={LAG_TABLES}", f"--table-size={LAG_TABLE_SIZE}"]
    with open(os.path.join(root, "sysbench-prepare.log"), "wb") as log:
        subprocess.run(sb + ["prepare"], stdout=log, stderr=subprocess.STDOUT, check=True)
    gtid = sql(args.port, "SELECT @@GLOBAL.gtid_binlog_pos")[0][0]
    for r in replicas:
        r.wait_gtid(gtid)
    # The fresh replicas' data dirs and the prepared tables are dirty in the page cache; the
    # kernel would write them back about 30 s later, in the middle of the load, and stall
    # the nodes' log fdatasyncs on the one disk (as the load's write-back did to catch-up).
    os.sync()
    print(f"bench: lag: replicas attached (direct, and via follower {follower.name}); "
          f"{seconds} s of sysbench at {LAG_RATE_TPS} tps + heartbeats", flush=True)

    beats = int(seconds / HEARTBEAT_PERIOD_S)
    cpu0 = {n.name: rounds.cpu_seconds(n.proc.pid) for n in cluster.nodes}
    th0 = {n.name: group_threads(rounds.thread_cpu(n.proc.pid)) for n in (lead, follower)}
    master_cpu0 = rounds.cpu_seconds(args.master_pid)
    sync0 = {n.name: log_sync_buckets(n) for n in cluster.nodes}
    proposals0 = log_sync_buckets(lead, "proposals")
    machine0 = rounds.machine_cpu()
    t0 = time.monotonic()
    with open(os.path.join(root, "sysbench-run.log"), "wb") as log:
        sbp = procs.add(subprocess.Popen(
            sb + [f"--threads={LAG_THREADS}", f"--rate={LAG_RATE_TPS}",
                  f"--time={seconds + 2}", "run"], stdout=log, stderr=subprocess.STDOUT))
    beat = start_beats(args, procs, beats, root, "lag")
    if beat.wait(timeout=seconds * 4) != 0:
        raise BenchError(f"heartbeat procedure failed (see {root}/beat-lag.log)")
    beat_seconds = time.monotonic() - t0
    if sbp.wait(timeout=120) != 0:
        raise BenchError(f"sysbench run failed (see {root}/sysbench-run.log)")
    load_seconds = time.monotonic() - t0
    steal = rounds.steal_percent(machine0, rounds.machine_cpu())
    log_sync = {n.name: log_sync_between(sync0[n.name], log_sync_buckets(n))
                for n in cluster.nodes}
    proposals = log_sync_between(proposals0, log_sync_buckets(lead, "proposals"))
    cpu = {n.name: rounds.cpu_seconds(n.proc.pid) - cpu0[n.name] for n in cluster.nodes}
    threads = {}
    threads_all = {}
    for n in (lead, follower):
        th1 = group_threads(rounds.thread_cpu(n.proc.pid))
        threads_all[n.name] = sorted(((k, v - th0[n.name].get(k, 0.0)) for k, v in th1.items()),
                                     key=lambda kv: -kv[1])
        threads[n.name] = threads_all[n.name][:5]
    master_cpu = rounds.cpu_seconds(args.master_pid) - master_cpu0
    gtid = sql(args.port, "SELECT @@GLOBAL.gtid_binlog_pos")[0][0]
    for r in replicas:
        r.wait_gtid(gtid)
    # The replica on the leader is not part of the failover section (its upstream dies).
    sql(on_leader.port, "STOP SLAVE")
    with open(os.path.join(root, "sysbench-run.log")) as f:
        tx_line = next((line for line in f if line.strip().startswith("transactions:")), None)
    tps = tx_line.split("(")[1].split()[0] if tx_line else "?"
    sb_txns = int(tx_line.split()[1]) if tx_line else LAG_RATE_TPS * seconds

    a_direct = direct.arrivals()
    a_via = via.arrivals()
    a_lead = on_leader.arrivals()
    if not (set(a_direct) == set(a_via) == set(a_lead)) or len(a_direct) != beats:
        raise BenchError(f"heartbeats: master wrote {beats}, direct replica has "
                         f"{len(a_direct)}, via follower {len(a_via)}, via leader {len(a_lead)}")
    ids = sorted(a_direct)[LAG_WARMUP_ROWS:]
    d = [a_direct[i][0] for i in ids]
    v = [a_via[i][0] for i in ids]
    lv = [a_lead[i][0] for i in ids]
    diff = [a_via[i][0] - a_direct[i][0] for i in ids]
    diff_lead = [a_lead[i][0] - a_direct[i][0] for i in ids]
    diff_hop = [a_via[i][0] - a_lead[i][0] for i in ids]
    # Are the slow rows spread out or bunched (stalls)? Seconds of the run that hold them.
    slow = [i for i in ids if a_via[i][0] - a_direct[i][0] > SLOW_EXTRA_MS]
    slow_windows = sorted({int(a_direct[i][1]) for i in slow})
    res = {
        "follower": follower.name, "leader": leader, "samples": len(ids), "beats": beats,
        "beat_seconds": beat_seconds, "load_seconds": load_seconds, "tps": tps,
        "direct": {p: pct(d, p) for p in (50, 90, 99, 100)},
        "via": {p: pct(v, p) for p in (50, 90, 99, 100)},
        "diff": {p: pct(diff, p) for p in (50, 90, 99, 100)},
        "lead": {p: pct(lv, p) for p in (50, 90, 99, 100)},
        "diff_lead": {p: pct(diff_lead, p) for p in (50, 90, 99, 100)},
        "diff_hop": {p: pct(diff_hop, p) for p in (50, 90, 99, 100)},
        "fsync": fsync_probe(root),
        "slow": len(slow), "slow_windows": len(slow_windows),
        "slow_worst": sorted(((a_via[i][0] - a_direct[i][0]), i) for i in slow)[-3:],
        "direct_mean": statistics.mean(d), "via_mean": statistics.mean(v),
        "cpu": cpu, "master_cpu": master_cpu, "threads": threads, "threads_all": threads_all,
        "txns": sb_txns + beats, "steal_pct": steal, "log_sync": log_sync,
        "proposals": proposals,
    }
    res["p99_extra"] = res["via"][99] - res["direct"][99]
    res["p50_extra"] = res["via"][50] - res["direct"][50]
    print(f"bench: lag direct p50 {res['direct'][50]:.2f} p99 {res['direct'][99]:.2f} ms; "
          f"via ferrobus p50 {res['via'][50]:.2f} p99 {res['via'][99]:.2f} ms; p99 extra "
          f"{res['p99_extra']:.2f} ms; via leader p50 {res['lead'][50]:.2f} p99 "
          f"{res['lead'][99]:.2f} ms; steal {steal:.0f} %; fsync after the load p99 "
          f"{res['fsync'][99]:.2f} ms alone, {res['fsync']['three'][99]:.2f} ms three at once; "
          f"log syncs during the load: {log_sync_text(res)}; {proposals_text(res)}",
          flush=True)
    return res, direct, via, follower


def lag_only(args, procs):
    """--only lag: the lag section alone, --lag-runs times for each of --lag-bins, the
    binaries alternating (A, B, B, A, A, B, ...) so that each pair shares the machine's load
    of the moment and neither always goes first. Each run starts a fresh cluster (synced to the master's current position), fresh
    replicas, and stops them after. Prints one line per run and a summary; writes every
    result as JSON to --lag-json when given."""
    bins = bins_of(args)
    results = []
    for rep in range(args.lag_runs):
        order = list(enumerate(bins))
        if rep % 2 == 1:
            order.reverse()
        for b, path in order:
            tag = f"lag-{rep + 1}-{b + 1}"
            root = os.path.join(args.work, tag)
            os.makedirs(root)
            first = len(procs.procs)
            try:
                cluster = Cluster(path, root, procs)
                leader = cluster.node(cluster.leader())
                syncer_start(leader, args.port)
                file, pos = master_position(args.port)
                wait_position(leader, file, pos)
                # Wait for the leader's admin address to be known everywhere (binlog server
                # start and the leader lookup need it).
                cluster.leader()
                res, _direct, _via, _follower = lag(args, procs, cluster, f"{tag}-run",
                                                    args.lag_seconds)
            finally:
                procs.stop_since(first)
            res["bin"] = path
            res["run"] = rep + 1
            total_cpu = sum(res["cpu"].values())
            res["cpu_per_txn_ms"] = total_cpu / res["txns"] * 1000
            results.append(res)
            th = {name: ", ".join(f"{k} {v:.2f}" for k, v in ths[:7])
                  for name, ths in res["threads_all"].items()}
            print(f"bench: lag-only run {rep + 1} bin {path}: p50 extra {res['p50_extra']:.2f} "
                  f"p99 extra {res['p99_extra']:.2f} ms (direct p99 {res['direct'][99]:.2f}, "
                  f"follower p99 {res['via'][99]:.2f}, leader p99 {res['lead'][99]:.2f}); "
                  f"per-row diff p99 {res['diff'][99]:.2f}; cpu "
                  + " ".join(f"{k} {v:.1f}" for k, v in sorted(res["cpu"].items()))
                  + f" s = {res['cpu_per_txn_ms']:.3f} ms/txn over {res['txns']} txns; "
                  f"master {res['master_cpu'] / res['txns'] * 1000:.3f} ms/txn; threads "
                  + " | ".join(f"{k} ({'leader' if k == res['leader'] else 'follower'}): {v}"
                               for k, v in th.items()), flush=True)
    print("bench: lag-only summary (medians per binary)", flush=True)
    for path in bins:
        rs = [r for r in results if r["bin"] == path]
        med = lambda f: statistics.median(f(r) for r in rs)  # noqa: E731
        print(f"bench:   {path}: runs {len(rs)}, p50 extra {med(lambda r: r['p50_extra']):.2f} ms, "
              f"p99 extra {med(lambda r: r['p99_extra']):.2f} ms (each: "
              + " ".join(f"{r['p99_extra']:.1f}" for r in rs)
              + f"), cpu/txn {med(lambda r: r['cpu_per_txn_ms']):.3f} ms (each: "
              + " ".join(f"{r['cpu_per_txn_ms']:.3f}" for r in rs) + ")", flush=True)
    if args.lag_json:
        with open(args.lag_json, "w") as f:
            json.dump(results, f, indent=1, default=str)


def proposals_text(res):
    """The leader's proposals during a lag run (raft thread to applied), as text."""
    p = res.get("proposals")
    if p is None:
        return "the leader's proposals not reported"
    return (f"the leader's {p['count']} proposals took p50 {p[50]:.2f} ms, p99 {p[99]:.2f} ms "
            "from its raft thread to applied")


def log_sync_text(res):
    """The nodes' log syncs during a lag run, leader first, as text."""
    parts = []
    for name, ls in sorted(res["log_sync"].items(), key=lambda kv: kv[0] != res["leader"]):
        role = "leader" if name == res["leader"] else "follower"
        if ls is None:
            parts.append(f"{name} ({role}) not reported")
        else:
            parts.append(f"{name} ({role}) {ls['count']} syncs, p50 {ls[50]:.2f} ms, "
                         f"p99 {ls[99]:.2f} ms")
    return "; ".join(parts)


def log_sync_buckets(node, histogram="log_sync"):
    """A histogram of the node's GET /raft/status (`log_sync`: its log's fdatasyncs;
    `proposals`: its proposals from the raft thread to applied) as {bucket end µs: count},
    or None when the node does not report it (a build from before it)."""
    code, reply = http("GET", node.url("/raft/status"))
    if code != 200 or histogram not in reply["data"]:
        return None
    return {int(end): int(n) for end, n in reply["data"][histogram]["buckets"]}


def log_sync_between(before, after):
    """count, p50 and p99 (ms, bucket upper bounds: at most 25 % high) of the log syncs
    between two readings of log_sync_buckets; None when either is missing."""
    if before is None or after is None:
        return None
    diff = sorted((end, n - before.get(end, 0)) for end, n in after.items()
                  if n > before.get(end, 0))
    count = sum(n for _, n in diff)
    if count == 0:
        return {"count": 0, 50: 0.0, 99: 0.0}

    def q(p):
        rank, seen = max(1, -(-p * count // 100)), 0
        for end, n in diff:
            seen += n
            if seen >= rank:
                return min(end, 2 ** 40) / 1000
        return diff[-1][0] / 1000

    return {"count": count, 50: q(50), 99: q(99)}


def fsync_probe(root, count=200):
    """ms per 4 KiB append + fsync in WORK (the disk the nodes use), p50 and p99: one writer
    alone, then three writers at once (a file and a thread each, as the three nodes sync
    their logs on this one disk)."""
    def writer(path, times):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            for _ in range(count):
                t = time.perf_counter()
                os.write(fd, b"x" * 4096)
                os.fsync(fd)
                times.append((time.perf_counter() - t) * 1000)
        finally:
            os.close(fd)
            os.remove(path)

    alone = []
    writer(os.path.join(root, "fsync-probe"), alone)
    together = [[] for _ in range(3)]
    threads = [threading.Thread(target=writer, args=(os.path.join(root, f"fsync-probe-{i}"), t))
               for i, t in enumerate(together)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    three = [ms for t in together for ms in t]
    return {50: pct(alone, 50), 99: pct(alone, 99),
            "three": {50: pct(three, 50), 99: pct(three, 99)}}


def vm_rss_bytes(pid):
    return rounds.proc_status_bytes(pid, "VmRSS")


def group_threads(threads):
    """CPU seconds per thread kind: trailing -<digits> ids folded (binlog-conn-7 → binlog-conn)."""
    out = {}
    for name, secs in threads.items():
        head, _, tail = name.rpartition("-")
        key = head if head and tail.isdigit() else name
        out[key] = out.get(key, 0.0) + secs
    return out


# ---- 3. concurrent dumps -----------------------------------------------------------------

def run_dumps(args, pid, port, user, password, clients, id_base, log_path):
    """N dump clients against the server `pid` listening on `port`; the dumpclient's
    figures plus the server's CPU seconds meanwhile (server_cpu_s)."""
    cpu0 = rounds.cpu_seconds(pid)
    with open(log_path, "ab") as log:
        r = subprocess.run([args.dumpclient, f"127.0.0.1:{port}", user, password,
                            args.first_file, str(clients), str(id_base)],
                           stdout=subprocess.PIPE, stderr=log, timeout=900)
    if r.returncode != 0:
        raise BenchError(f"dumpclient ({clients} clients on :{port}) exited {r.returncode}, "
                         f"see {log_path}")
    out = json.loads(r.stdout)
    out["server_cpu_s"] = rounds.cpu_seconds(pid) - cpu0
    if out["client_min_bytes"] != out["client_max_bytes"]:
        raise BenchError(f"dump clients on :{port} read different byte counts: {out}")
    out["mib_s"] = out["bytes"] / MIB / out["seconds"]
    return out


def dump_pair(args, follower, n, rep, root):
    """One repetition at N clients: ferrobus and the master, in an order that alternates."""
    log = os.path.join(root, "dumpclient.log")
    out = {}
    order = ("ferrobus", "master") if rep % 2 == 0 else ("master", "ferrobus")
    for which in order:
        if which == "ferrobus":
            pid, port, user, pw, base = (follower.proc.pid, follower.binlog_port, FERRO_USER,
                                         FERRO_PASSWORD, 20000)
        else:
            pid, port, user, pw, base = (args.master_pid, args.port, REPL_USER, REPL_PASSWORD,
                                         40000)
        out[which] = run_dumps(args, pid, port, user, pw, n, base + 200 * rep, log)
    return out


def dumps(args, follower):
    root = os.path.join(args.work, "dumps")
    os.makedirs(root)
    file, pos = master_position(args.port)
    wait_position(follower, file, pos)  # forwarded to the leader: what the cluster holds
    binlog_bytes = sum(int(r[1]) for r in sql(args.port, "SHOW BINARY LOGS"))
    results = []
    for n in DUMP_CLIENTS:
        reps = [dump_pair(args, follower, n, i, root) for i in range(DUMP_REPS)]
        med = lambda which, key: statistics.median(r[which][key] for r in reps)  # noqa: E731
        res = {"clients": n, "reps": reps,
               "ratios": [r["ferrobus"]["mib_s"] / r["master"]["mib_s"] for r in reps]}
        for which in ("master", "ferrobus"):
            res[which] = {k: med(which, k) for k in
                          ("mib_s", "server_cpu_s", "client_max_s", "client_max_bytes",
                           "events", "seconds")}
        res["ratio"] = res["ferrobus"]["mib_s"] / res["master"]["mib_s"]
        res["binlog_bytes"] = binlog_bytes
        for which in ("master", "ferrobus"):
            res[which]["clients_n"] = n
        results.append(res)
        print(f"bench: {n:3d} dump clients: master {res['master']['mib_s']:.0f} MiB/s, "
              f"ferrobus {follower.name} {res['ferrobus']['mib_s']:.0f} MiB/s (medians of "
              f"{DUMP_REPS}), ratio {res['ratio']:.2f}; per repetition "
              + ", ".join(f"{x:.2f}" for x in res["ratios"]), flush=True)
    return results


def dumps_only(args, procs):
    """--only dumps: a cluster of each binary of --bins synced to the whole binlog, then at
    each N of DUMP_CLIENTS, DUMP_REPS repetitions of the master and every binary's follower
    serving N dump clients, in an order that rotates each repetition. Prints MiB/s and
    server CPU seconds per GiB sent, medians per server."""
    bins = bins_of(args)
    servers = [("master", args.master_pid, args.port, REPL_USER, REPL_PASSWORD)]
    for b, path in enumerate(bins):
        root = os.path.join(args.work, f"dumps-bin-{b + 1}")
        os.makedirs(root)
        cluster = Cluster(path, root, procs)
        leader = cluster.node(cluster.leader())
        # Every cluster's syncer stays connected, each as a replica of its own server id.
        syncer_start(leader, args.port, SYNCER_ID + b)
        wait_position(leader, args.master_file, args.master_pos)
        follower = next(n for n in cluster.nodes if n is not leader)
        start_binlog_server(follower)
        servers.append((path, follower.proc.pid, follower.binlog_port, FERRO_USER,
                        FERRO_PASSWORD))
        print(f"bench: {path}: follower {follower.name} synced, peak RSS "
              f"{rounds.vm_hwm_bytes(follower.proc.pid) / MIB:.1f} MiB", flush=True)
    log = os.path.join(args.work, "dumpclient.log")
    for n in DUMP_CLIENTS:
        got = {name: [] for name, *_ in servers}
        for rep in range(DUMP_REPS):
            shift = rep % len(servers)
            for i, (name, pid, port, user, pw) in enumerate(servers[shift:] + servers[:shift]):
                r = run_dumps(args, pid, port, user, pw, n, 20000 + 1000 * i + 200 * rep, log)
                r["cpu_per_gib"] = r["server_cpu_s"] / (r["bytes"] / MIB / 1024)
                got[name].append(r)
        master = statistics.median(r["mib_s"] for r in got["master"])
        print(f"bench: {n:3d} dump clients (medians of {DUMP_REPS}): "
              + "; ".join(f"{name} {statistics.median(r['mib_s'] for r in rs):.0f} MiB/s "
                          f"(ratio {statistics.median(r['mib_s'] for r in rs) / master:.2f}), "
                          f"{statistics.median(r['cpu_per_gib'] for r in rs):.2f} cpu s/GiB"
                          for name, rs in got.items()), flush=True)
    for name, pid, *_ in servers[1:]:
        print(f"bench: {name}: peak RSS after the dumps {rounds.vm_hwm_bytes(pid) / MIB:.1f} "
              f"MiB, now {vm_rss_bytes(pid) / MIB:.1f} MiB", flush=True)


# ---- 4. failover -------------------------------------------------------------------------

def failover(args, procs, cluster, via, follower):
    root = os.path.join(args.work, "failover")
    os.makedirs(root)
    beat = start_beats(args, procs, FAILOVER_BEATS, root, "failover")
    time.sleep(FAILOVER_KILL_AFTER_S)
    old = cluster.node(cluster.leader())
    survivors = [n for n in cluster.nodes if n is not old and n.alive()]
    pos_before = syncer_status(old)
    old.proc.send_signal(signal.SIGKILL)
    t0 = time.monotonic()
    kill_wall = time.time()
    old.proc.wait()
    g0 = seq_of(sql(args.port, "SELECT @@GLOBAL.gtid_binlog_pos")[0][0])
    t_g0 = time.monotonic() - t0
    t_elect = new = None
    t_resume = None
    statuses = []
    deadline = t0 + 60
    while time.monotonic() < deadline and t_resume is None:
        if new is None:
            for n in survivors:
                name = cluster.leader_seen_by(n, timeout=0.5)
                if name is not None and name != old.name:
                    t_elect = time.monotonic() - t0
                    new = cluster.node(name)
                    break
        else:
            try:
                st = syncer_status(new)
            except (BenchError, OSError, ValueError):
                st = None
            if st is not None:
                if not statuses or statuses[-1][1] != st.get("status"):
                    statuses.append((time.monotonic() - t0, st.get("status")))
                if seq_of(st.get("current_gtid")) > g0:
                    t_resume = time.monotonic() - t0
        time.sleep(POLL_S)
    if t_resume is None:
        raise BenchError(f"no resume within 60 s of the kill (elected: {t_elect}, "
                         f"statuses {statuses})")
    beat.wait(timeout=120)
    res = {"old": old.name, "new": new.name, "t_elect_s": t_elect, "t_resume_s": t_resume,
           "t_g0_s": t_g0, "g0": g0, "statuses": statuses,
           "old_pos": (pos_before.get("last_binlog_file"), pos_before.get("last_file_position"))}
    # The replica on the follower: did it keep streaming through the leader's death?
    if follower is not old:
        gtid = sql(args.port, "SELECT @@GLOBAL.gtid_binlog_pos")[0][0]
        via.wait_gtid(gtid, timeout_s=120)
        arr = via.arrivals()
        after = sorted((a[1] - kill_wall, i) for i, a in arr.items() if a[1] > kill_wall)
        st = via.slave_status()
        res["replica_first_after_kill_s"] = after[0][0] if after else None
        res["replica_io_error"] = st.get("Last_IO_Error", "")
        res["replica_io_running"] = st.get("Slave_IO_Running", "")
        # Largest gap between consecutive arrivals around the kill.
        times = sorted(a[1] for a in arr.values() if kill_wall - 5 < a[1] < kill_wall + 30)
        res["replica_max_gap_s"] = max((b - a for a, b in zip(times, times[1:])), default=None)
    print(f"bench: failover: killed {old.name}; {new.name} leader after {t_elect * 1000:.0f} ms, "
          f"stored a post-kill transaction after {t_resume * 1000:.0f} ms", flush=True)
    return res


# ---- report ------------------------------------------------------------------------------

def source_state():
    """The commit the binary was built from, and any uncommitted source files."""
    def git(*a):
        r = subprocess.run(["git", *a], capture_output=True, text=True)
        # Not strip(): porcelain lines begin with a status column that may be a space.
        return r.stdout.rstrip("\n") if r.returncode == 0 else ""
    head = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = [line[3:] for line in git("status", "--porcelain", "--", "src", "Cargo.toml",
                                      "Cargo.lock").splitlines()]
    if not dirty:
        return f"commit {head}, clean"
    return (f"commit {head} plus uncommitted changes in " + ", ".join(f"`{d}`" for d in dirty)
            + " (the working tree is what `make bench` builds)")


def gib(dump):
    """GiB sent in one dump run: per-client bytes times clients."""
    return dump["client_max_bytes"] * dump["clients_n"] / (1024 * MIB)


def verdict(ok):
    return "met" if ok else "**not met**"


def report(args, m, v, cu, lg, dp, fo, rss):
    refs, runs = cu
    ratios = [r["mib_s"] / x["mib_s"] for x, r in zip(refs, runs)]
    ratio = statistics.median(ratios)
    n = len(refs)
    date = subprocess.run(["date", "-u"], capture_output=True, text=True).stdout.strip()
    head = "| | median | " + " | ".join(f"round {i + 1}" for i in range(n)) + " |"
    sep = "|---|---:|" + "---:|" * n
    threads = {}
    for r in runs:
        for name, secs in group_threads(r["leader_threads"]).items():
            threads.setdefault(name, []).append(secs)
    thread_list = ", ".join(
        f"`{k}` {statistics.median(s):.2f} s"
        for k, s in sorted(threads.items(), key=lambda kv: -statistics.median(kv[1]))[:6])
    lead_cpu = statistics.median(r["cpu"][r["leader"]] for r in runs)
    foll_cpu = statistics.median(
        sum(c for name, c in r["cpu"].items() if name != r["leader"]) / 2 for r in runs)
    total_cpu = statistics.median(sum(r["cpu"].values()) for r in runs)
    secs = statistics.median(r["seconds"] for r in runs)
    L = [
        "",
        "# Three-node cluster",
        "",
        f"- Command: `make bench` (scripts/bench.sh → scripts/bench/cluster.py); date {date}",
        f"- Machine: the same {m['nproc']} CPUs ({m['model']}), {m['mem_gib']:.1f} GiB; the "
        "MariaDB master, the three ferrobus nodes (release build), the replicas and every "
        "client share these 2 cores and one disk, over loopback TCP.",
        f"- Software: {v['ferrobus']}, {v['mariadbd']}, {v['sysbench']}",
        f"- Source: {source_state()}",
        "",
        "## Catch-up of the whole binlog into a three-node cluster",
        "",
        "Method: rounds alternate the reference (`mariadb-binlog --read-from-remote-server "
        "--raw --to-last-log` copying every binlog file to local files, timed around the "
        "process) and a fresh three-node cluster (empty data dirs; timed from `PUT "
        "/binlog/syncer/start` on the elected leader until the leader's `GET "
        "/binlog/syncer/status`, polled every 10 ms, shows the master's `SHOW MASTER STATUS` "
        "file and position — i.e. every transaction committed by a Raft majority, fsynced on "
        "the leader and at least one follower, and applied on the leader). Same binlog as "
        "above. " + rounds.warm_note(args.warm_bytes) + (
            " It matters most here: the three nodes write three copies of the binlog into "
            "the page cache of one VM, where on three machines each would write one. "
            "Measured with and without it, one after the other (`BENCH_ONLY=catchup`, 5 "
            "rounds each, 2026-11-26; the size of the effect follows the host): median "
            "ratio 0.93 with, 0.53 without, the nodes' CPU per catch-up 0.49 s against "
            "1.11 s (the difference is `copy_folio_from_iter_atomic`, the copy of `write` "
            "data into new page-cache pages, in `perf`), the reference 290–297 MiB/s "
            "against 265–283 MiB/s. The earlier runs' \"slow mode\" of catch-up (the nodes "
            "at 1.3 CPU s per round instead of 0.7) was most likely this."
            if args.warm_bytes > 0 else ""),
        "",
        head, sep,
        rounds.row("reference `mariadb-binlog --raw` MiB/s", [r["mib_s"] for r in refs],
                   "{:.1f}"),
        rounds.row("three-node ferrobus MiB/s", [r["mib_s"] for r in runs], "{:.1f}"),
        rounds.row(f"ratio (goal ≥ {CATCH_UP_GOAL_MIN})", ratios, "{:.2f}"),
        rounds.row("ferrobus seconds", [r["seconds"] for r in runs], "{:.2f}"),
        rounds.row("CPU time stolen by the host during the cluster's catch-up %",
                   [r["steal_pct"] for r in runs], "{:.0f}"),
        "",
        f"Goal ratio ≥ {CATCH_UP_GOAL_MIN}: {verdict(ratio >= CATCH_UP_GOAL_MIN)} (median "
        f"{ratio:.2f}). CPU during catch-up (medians): leader {lead_cpu:.2f} s, each follower "
        f"{foll_cpu:.2f} s, the three together {total_cpu:.2f} s in {secs:.2f} s of wall time; "
        f"on the leader by thread: {thread_list}.",
        "",
        "Where the time goes: on one 2-core machine the three nodes each receive, check (CRC32) "
        "and write the whole binlog and fsync it, and the leader also sends it twice over "
        "loopback, so the cluster does about three times the single node's work on the same "
        "2 cores (shared with the master). The syncer keeps up to "
        "`SYNCER_PROPOSALS_IN_FLIGHT_MAX` batches (of up to `BATCH_BYTES_MAX`) in flight, so a "
        "batch's leader fsync, follower round trip and apply overlap the next one; what is "
        "left is CPU: three nodes' receive, CRC, write and fsync of every byte on the cores "
        "that also run the master. A cluster on three machines would not share them. Copies "
        "per byte were cut (2026-11-26): raft-rs reads the entries it applies from an "
        "in-memory cache of the log's unapplied tail instead of reading them back from the "
        "files (a read, a zeroed buffer and a CRC32 per byte on every node); the log writes "
        "large entries from where they are and no longer copies each entry before encoding "
        "it; the syncer packs events straight into the entry it builds and hands full "
        "entries over without a copy, and lends events from its read buffer. Measured "
        "against the build before (`BENCH_ONLY=catchup BENCH_BINS=\"before after\"`, 8 "
        "rounds, each pair after the same reference): node CPU per catch-up 1.8 → 1.5 s, "
        "ratio higher in 7 of 8 rounds; and the whole series against it, 4 rounds: ratio "
        "0.74 → 0.92, CPU 1.3 → 1.0 s. The ratio still moves with the reference, which "
        "ran 85–240 MiB/s in the same hour. Sixth session (2026-11-26), each step measured "
        "the same way: glibc malloc keeps the 1–2 MiB batches, raft messages and peer frames "
        "in its arenas instead of mapping, faulting in, growing (`mremap`) and unmapping "
        "each one, every unmapping a TLB flush on the other core (minor faults per "
        "catch-up 32,700 → 17,200, node CPU 0.93 → 0.78 s), and event headers are read "
        "from their fixed layout; the leader writes entry payloads to its followers from "
        "where they are (`writev`) instead of copying them into a frame buffer, a quarter "
        "of its `raft-out` thread (8 rounds: CPU 1.28 → 1.00 s, ratio higher in 6 of 8); "
        "8 syncer batches in flight instead of 4, since each node's log fdatasyncs take "
        "p50 3–7 ms and p99 12–33 ms here during a catch-up (8 rounds: median ratio 0.85 → "
        "0.97). The bench itself now writes the load's dirty pages back before timing "
        "anything: the kernel had written them in the middle of rounds 5 and 6, which took "
        "1.5–2× as long as rounds 1–4.",
        "",
    ]
    d, vi, df = lg["direct"], lg["via"], lg["diff"]
    lag_ok = lg["p99_extra"] <= LAG_P99_EXTRA_GOAL_MS
    L += [
        "## Added replication lag through the cluster",
        "",
        f"Method: three MariaDB replicas (single SQL thread, `slave_run_triggers_for_rbr=YES`), "
        f"one attached to the master, one to follower {lg['follower']}'s binlog server, one "
        f"to leader {lg['leader']}'s binlog server, all by GTID from the same position. The "
        "goal is about the follower path; the leader path splits it in two (the leader "
        "applies an entry once a majority has it durably; a follower applies it after the "
        "leader's next message carries the new commit index). Load on the master: "
        f"sysbench oltp_write_only, {LAG_THREADS} threads at `--rate={LAG_RATE_TPS}` "
        f"(achieved {lg['tps']} tps) on {LAG_TABLES} tables × {LAG_TABLE_SIZE} rows, plus a "
        f"heartbeat: a stored procedure inserting one autocommitted row "
        f"`(id, SYSDATE(6))` then sleeping 10 ms ({lg['beats']} rows in "
        f"{lg['beat_seconds']:.1f} s). On each replica an AFTER INSERT trigger stores "
        "`SYSDATE(6)` when its SQL thread applies the row; lag = applied − written, in the "
        "same clock (one machine). The first "
        f"{LAG_WARMUP_ROWS} heartbeats are left out; {lg['samples']} samples per path.",
        "",
        "Resolution: timestamps are µs (DATETIME(6), CLOCK_REALTIME); the master's value is "
        "taken when the INSERT starts, so both paths include the master's own insert, commit "
        "and binlog write, and both include the replica's IO thread, relay log and SQL "
        "thread; those cancel in the difference. What does not cancel is scheduling noise "
        "on 2 shared cores (10 processes), typically 0.1–few ms. The difference is also "
        "given per heartbeat (same row on both replicas).",
        "",
        "| ms | p50 | p90 | p99 | max |",
        "|---|---:|---:|---:|---:|",
        f"| replica on the master | {d[50]:.2f} | {d[90]:.2f} | {d[99]:.2f} | {d[100]:.2f} |",
        f"| replica on ferrobus follower | {vi[50]:.2f} | {vi[90]:.2f} | {vi[99]:.2f} | "
        f"{vi[100]:.2f} |",
        f"| replica on ferrobus leader | {lg['lead'][50]:.2f} | {lg['lead'][90]:.2f} | "
        f"{lg['lead'][99]:.2f} | {lg['lead'][100]:.2f} |",
        f"| per-row difference: via follower − direct | {df[50]:.2f} | {df[90]:.2f} | "
        f"{df[99]:.2f} | {df[100]:.2f} |",
        f"| per-row difference: via leader − direct | {lg['diff_lead'][50]:.2f} | "
        f"{lg['diff_lead'][90]:.2f} | {lg['diff_lead'][99]:.2f} | {lg['diff_lead'][100]:.2f} |",
        f"| per-row difference: via follower − via leader | {lg['diff_hop'][50]:.2f} | "
        f"{lg['diff_hop'][90]:.2f} | {lg['diff_hop'][99]:.2f} | {lg['diff_hop'][100]:.2f} |",
        "",
        f"Added lag: p50 {lg['p50_extra']:.2f} ms, p99 {lg['p99_extra']:.2f} ms "
        f"(p99 of the ferrobus path − p99 of the direct path; the table is the run with the "
        f"median p99 extra of {len(lg['runs'])} runs of {LAG_SECONDS} s, each with fresh "
        "replicas; every run's p99 extra, and its direct p99 and the CPU time the host "
        "stole from this machine as signs of the load then: "
        + ", ".join(f"{r['p99_extra']:.2f} ms (direct {r['direct'][99]:.2f}, steal "
                    f"{r['steal_pct']:.0f} %)" for r in lg["runs"]) + "). Goal p99 ≤ "
        f"{LAG_P99_EXTRA_GOAL_MS:.0f} ms extra: {verdict(lag_ok)}. CPU over the "
        f"{lg['load_seconds']:.0f} s load: master {lg['master_cpu']:.1f} s, "
        + ", ".join(f"{k} {s:.1f} s" for k, s in sorted(lg["cpu"].items())) + ". "
        f"One 4 KiB append + fsync on this disk (200 in a row, after the load): p50 "
        f"{lg['fsync'][50]:.2f} ms, p99 {lg['fsync'][99]:.2f} ms; three such writers at "
        f"once (a file each, as the three nodes): p50 {lg['fsync']['three'][50]:.2f} ms, "
        f"p99 {lg['fsync']['three'][99]:.2f} ms. The nodes' own log fdatasyncs during the "
        f"load (each node's `GET /raft/status` histogram, read before and after; a quantile "
        f"is its bucket's upper bound, at most 25 % high): {log_sync_text(lg)}; and "
        f"{proposals_text(lg)} (one commit round: the followers' acknowledgements, the log "
        "syncs of a majority, the apply). "
        f"Heartbeats more than "
        f"{SLOW_EXTRA_MS:.0f} ms later through the follower than directly: {lg['slow']} of "
        f"{lg['samples']}, falling in {lg['slow_windows']} distinct seconds of the run "
        "(few seconds = bunched stalls rather than a steady cost). Busiest threads during "
        "the load: " + "; ".join(
            f"{name} ({'leader' if name == lg['leader'] else 'follower'}): " + ", ".join(
                f"`{k}` {v:.2f} s" for k, v in ths) for name, ths in lg["threads"].items())
        + ".",
        "",
    ]
    lag_cpu = sum(lg["cpu"].values())
    txns = lg["txns"]
    L += [
        "Where the time goes: the leader path (syncer → Raft commit → apply on the leader) "
        "carries almost all of the added lag; the follower's extra hop (commit index in the "
        "leader's next message, apply, binlog server wake-up) is the last row of the table. "
        f"The three nodes used {lag_cpu:.1f} CPU s for about {txns:,} transactions "
        f"({lag_cpu / txns * 1000:.2f} ms per transaction; the master "
        f"{lg['master_cpu'] / txns * 1000:.2f} ms), on 2 cores that also run the master, "
        "three replicas and sysbench. A `perf` profile of the nodes (2026-11-26) put about "
        "80 % of their CPU in the kernel (fdatasync 21–31 %, context switches 26–30 %, socket "
        "I/O about 20 %; ferrobus's own code under 1 % per function). What makes the tail is "
        "the disk: every transaction waits for log fdatasyncs on a majority, whereas this "
        "master writes its binlog without any (`sync_binlog=0`, "
        "`innodb_flush_log_at_trx_commit=0`). fdatasync on this disk is fast when the machine "
        "is idle (above) and slow while the MariaDB instances write: a lag run with every data "
        "directory on tmpfs (`BENCH_TMP=/dev/shm BENCH_ONLY=lag scripts/bench.sh`) gave p99 "
        "extra 4.7 ms while the same run on disk gave 16–21 ms at that time. The log's "
        "fdatasync runs on a sync thread per node (raft-rs `advance_append_async` / "
        "`on_persist_ready`; acknowledgements wait for it): a leader commits as soon as any "
        "two of the three nodes have synced, rather than always waiting for its own "
        "fdatasync, and its raft thread takes acknowledgements while it syncs (since the "
        "sixth session, only for appends over 64 KiB or behind a running sync: see the end of "
        "this paragraph). Measured A/B "
        "against the synchronous build, interleaved in the same period (`BENCH_ONLY=lag "
        "BENCH_LAG_BINS=\"sync async\" BENCH_LAG_SECONDS=30`, 7 pairs, 2026-11-26): median "
        "p99 extra 6.6 → 5.2 ms (synchronous 3.7–15.0 ms, asynchronous 2.4–8.6 ms; lower in "
        "4 pairs, higher in 2, equal in 1), CPU per transaction +1 % and +11 % in the two "
        "series (a thread hand-off per sync). Earlier changes, each measured the same way: a "
        "Ready's committed entries are applied before the Ready's own fsync (median p99 extra "
        "20.6 → 13.0 ms), the raft thread writes small messages straight to idle peer "
        "sockets, the leader watcher no longer wakes per entry, the log's tail is "
        "preallocated so fdatasync need not update the inode, and the syncer reads and "
        "proposes on one thread (CPU per transaction 1.36 → 1.15 ms). Later (2026-11-26, "
        "third session): 1 MiB of preallocation instead of 64 KiB, so that only one "
        "fdatasync per MiB written also updates the inode (3 pairs in a busy period: p99 "
        "extra 10.6/17.2/17.3 → 9.2/7.2/16.5 ms, CPU per transaction 1.50 → 1.31 ms); "
        "sending acknowledgements from the sync thread rather than the raft thread was "
        "tried and left out (4 pairs: no difference the noise lets through, CPU per "
        "transaction +3 %). Fourth session (2026-11-26): a follower syncs a small append "
        "on its raft thread when no sync runs, rather than hand it to the sync thread and "
        "back (4 pairs: CPU per transaction 1.35 → 1.15 ms, median p99 extra 10.7 → 7.3 ms; "
        "with two variants of the rule, CPU per transaction was lower in 13 of 16 pairs and "
        "p99 extra in 11 of 16). Putting the MariaDB instances' data dirs on tmpfs and the "
        "nodes' on disk (`BENCH_MARIADB_TMP=/dev/shm`) moved the p99 extra little (4 runs "
        "each, interleaved: median 6.5 against 9.0 ms on disk), so the MariaDB instances' own "
        "writes are not what stalls the nodes' fdatasyncs. The result follows the "
        "machine's load more than any of these: the same binary's p99 extra ranged 2.4–8.6 "
        "ms within one half hour, and the build before the follower change 2.7–23 ms (16 runs) "
        "within one hour of this session. Fifth session (2026-11-26): the nodes now time "
        "their own log fdatasyncs (`GET /raft/status`, read before and after the load, above). "
        "Each node syncs about 200 times a second here, once per transaction (sysbench and "
        "the heartbeats arrive a few ms apart, so there is little to group), and every commit "
        "waits for two of the three syncs. In two runs (`BENCH_ONLY=lag BENCH_LAG_RUNS=2 "
        "BENCH_LAG_SECONDS=30`) a node's sync had p50 0.4–0.5 ms and p99 5.1 ms at 5 % "
        "steal (p99 extra 10.1 ms), p99 10–12 ms at 23 % steal (p99 extra 16.7 ms): the "
        "added lag's tail is this shared disk's fdatasync tail, which the direct replica "
        "never waits for. A 100 µs scheduler slice for the replication threads (Linux 6.12+ "
        "`sched_setattr` with `sched_runtime`, so that a woken thread preempts sooner) was "
        "tried and left out: 4 pairs, median p99 extra 8.75 → 8.64 ms, CPU per transaction "
        "+6 %. Sixth session (2026-11-26): the leader now also times its proposals from its "
        "raft thread to applied (`GET /raft/status` `proposals`, above): a commit round "
        "had p50 1.0–1.3 ms and p99 6–7 ms at 1 % steal, against a log sync p99 of 4–5 ms. "
        "The whole bench now takes five runs (the median of three moved with one noisy run), "
        "and writes the fresh replicas' data dirs back before each load, so that the kernel "
        "does not write them in the middle of it. The session's catch-up changes (malloc "
        "thresholds, vectored peer writes, 8 batches in flight) did not move the lag: 4 "
        "interleaved pairs against the build before (`BENCH_LAG_BINS`), median p99 extra "
        "11.0 ms before, 9.9 ms after, in a period of 1–13 % steal. On a quiet host (0–1 % "
        "steal) the same build before measured 2.8 and 2.9 ms; from 3 % steal on, every "
        "run of either build was above the goal. The lag's tail follows the host's "
        "contention, which lands on both paths, but on the cluster's path several times "
        "over (three nodes' threads and syncs per transaction against the master's one "
        "hand-off to the direct replica). Fewer hand-offs helped: a leader now also syncs a "
        "small append on its raft thread when no sync runs, as followers did (its append has "
        "already left for the followers), instead of handing it to its sync thread and back: "
        "6 interleaved pairs, CPU per transaction 1.11 → 1.02 ms (lower in 5 of 6), median "
        "p99 extra 5.3 → 3.9 ms (lower in 4 of 6, within the noise). Acknowledgements that "
        "arrive during such a sync wait for it; with this nearly serial load that is rare. "
        "Seventh session (2026-11-26): each node's raft thread reads its peers' connections "
        "itself (it sleeps in `poll` on them and on an eventfd its requests wake), where a "
        "reader thread per connection took each message and woke the raft thread: one "
        "wake-up instead of two for every acknowledgement, append and commit notice. 4 "
        "interleaved pairs at 4–16 % steal: CPU per transaction lower in 4 of 4 (1.24 → "
        "1.17 ms), p50 extra lower in 3 of 4, p99 extra no visible change (10.3–15.4 "
        "against 6.9–12.7 ms). Handing the leader's small appends back to its sync thread "
        "(so that two followers' syncs could commit without the leader's) was tried on top "
        "and left out: 4 pairs, median p99 extra 11.0 ms inline against 15.2 ms handed off.",
        "",
    ]
    worst = min(r["ratio"] for r in dp)
    L += [
        "## Concurrent dump clients",
        "",
        f"Method: `scripts/bench/dumpclient` (Rust, std only) opens N connections, logs each in, "
        "then at one barrier (a thread each) sends `COM_BINLOG_DUMP` with `BINLOG_DUMP_NON_BLOCK` "
        "and `BINLOG_SEND_ANNOTATE_ROWS_EVENT` (as mariadb-binlog does: every event) from the "
        f"first binlog file, position 4, on each; every packet is counted and dropped until "
        f"the EOF packet (binlog at that time: {dp[0]['binlog_bytes'] / MIB:.1f} MiB in SHOW "
        "BINARY LOGS; a client reads a little more: one OK byte per event and the artificial "
        "events). Aggregate MiB/s = all packet payload bytes / wall time from the "
        f"first dump request to the last EOF. ferrobus is follower {lg['follower']}'s binlog server "
        "(the cluster holding the whole binlog, idle); the master is the same MariaDB. "
        f"Each N is run {DUMP_REPS} times, alternating which server goes first; the table "
        "shows medians (the ratio is of the median MiB/s) and the ratio of each repetition. "
        "The clients run on the same 2 cores as the servers.",
        "",
        "| clients | MiB per client (master / ferrobus) | master MiB/s | ferrobus MiB/s | "
        "ratio (goal ≥ 1.0) | master CPU s | ferrobus CPU s | slowest client s "
        "(master / ferrobus) | packets per client (master / ferrobus) | ratio per repetition |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in dp:
        ma, fb = r["master"], r["ferrobus"]
        L.append(f"| {r['clients']} | {ma['client_max_bytes'] / MIB:.1f} / "
                 f"{fb['client_max_bytes'] / MIB:.1f} | {ma['mib_s']:.0f} | {fb['mib_s']:.0f} | "
                 f"{r['ratio']:.2f} | {ma['server_cpu_s']:.1f} | {fb['server_cpu_s']:.1f} | "
                 f"{ma['client_max_s']:.2f} / {fb['client_max_s']:.2f} | "
                 f"{int(ma['events']) // r['clients']:,} / "
                 f"{int(fb['events']) // r['clients']:,} | "
                 + " ".join(f"{x:.2f}" for x in r["ratios"]) + " |")
    L += [
        "",
        f"Goal ratio ≥ {DUMP_GOAL_MIN} at every N: {verdict(worst >= DUMP_GOAL_MIN)} "
        f"(lowest {worst:.2f}).",
        "",
        "Where the time goes: from 10 clients on, the servers and the clients together keep "
        "both cores busy, so the aggregate is bounded by CPU and the ratio follows each "
        "server's CPU per byte sent. Server CPU seconds per GiB sent (medians): "
        + "; ".join(
            f"N={r['clients']}: master {r['master']['server_cpu_s'] / gib(r['master']):.2f}, "
            f"ferrobus {r['ferrobus']['server_cpu_s'] / gib(r['ferrobus']):.2f}" for r in dp)
        + ". ferrobus reads each entry through a 64 KiB window (`CURSOR_READ_BYTES_MAX`), "
        "checks every event's CRC32 where it lies in the window and copies it once, into its "
        "64 KiB write buffer; MariaDB sends events from its IO_CACHE over the page cache. "
        "Since the seventh session (2026-11-26) the cursor lends each event from its window "
        "instead of allocating a copy of it: `BENCH_ONLY=dumps BENCH_BINS=\"before after\"`, "
        "3 repetitions per N, server CPU per GiB 1.23/1.40/0.94/1.21 → 1.02/1.18/0.81/0.96 s "
        "at 1/10/50/100 clients. The spread between repetitions (last column) is as large "
        "as the gap between the servers. Since the tenth session (2026-11-26) an entry's "
        "record head and its data come in one `preadv` when a dump reads it from its start: "
        "most entries are read so, and the binlog written while the cluster followed the "
        "master live (the lag runs above) is one small entry per transaction. On a store of "
        "such entries (`scripts/bench/ab-dumps-small.sh`, 10 clients, 3 repetitions) server "
        "CPU per GiB went 0.83–0.91 → 0.76–0.78 s, MiB/s +9 %.",
        "",
    ]
    resume_after_elect = fo["t_resume_s"] - fo["t_elect_s"]
    L += [
        "## Failover",
        "",
        "Method: heartbeats (one row every 10 ms) keep being written on the master. "
        f"`kill -9` of the leader ({fo['old']}); right after it, the master's "
        f"`@@gtid_binlog_pos` (seq {fo['g0']}, read {fo['t_g0_s'] * 1000:.0f} ms after the "
        "kill). Every 10 ms the script asks the survivors `GET /cluster` until one names a "
        "live leader (election seen), then that leader's `GET /binlog/syncer/status` until "
        "its `current_gtid` is past that seq: a transaction the master committed after the "
        "kill is stored by the new leader's syncer (committed through Raft and applied). "
        "Resolution: the 10 ms poll plus one HTTP round trip; the resume time includes the "
        "few transactions written between the leader's last store and the kill.",
        "",
        "| | ms after kill -9 |",
        "|---|---:|",
        f"| new leader ({fo['new']}) seen through GET /cluster | {fo['t_elect_s'] * 1000:.0f} |",
        f"| new leader stores a post-kill transaction | {fo['t_resume_s'] * 1000:.0f} |",
        f"| of which after the election was seen | {resume_after_elect * 1000:.0f} |",
    ]
    if fo.get("replica_first_after_kill_s") is not None:
        L.append(f"| replica on follower {lg['follower']}: first heartbeat written after the "
                 f"kill applied | {fo['replica_first_after_kill_s'] * 1000:.0f} |")
        L.append(f"| replica on follower: longest gap between applied heartbeats | "
                 f"{fo['replica_max_gap_s'] * 1000:.0f} |")
    L += [
        "",
        f"Syncer status on the new leader over time: "
        + ", ".join(f"{s} at {t * 1000:.0f} ms" for t, s in fo["statuses"]) + ". "
        f"Replica on the follower after the failover: Slave_IO_Running "
        f"{fo.get('replica_io_running', 'n/a')}, Last_IO_Error "
        f"'{fo.get('replica_io_error', '')}'.",
        "",
        f"Goal (syncer resumes within {RESUME_GOAL_S:.0f} s of the election): "
        f"{verdict(resume_after_elect <= RESUME_GOAL_S)} ({resume_after_elect * 1000:.0f} ms). "
        f"Kill-to-streaming < {RESUME_GOAL_S:.0f} s (issue's wording): "
        f"{verdict(fo['t_resume_s'] < RESUME_GOAL_S)} ({fo['t_resume_s'] * 1000:.0f} ms). "
        "kingbus waited 10 s before restarting a syncer.",
        "",
        "## Peak RSS per node",
        "",
        "VmHWM (peak resident set) of each node after catch-up and the lag run, and again "
        "just before the kill, after the dumps (the follower served a replica and every dump "
        "client; the leader a replica).",
        "",
        "| node | role | peak RSS MiB after catch-up + lag | peak RSS MiB after dumps | "
        "RSS MiB after dumps (VmRSS, idle) |",
        "|---|---|---:|---:|---:|",
    ]
    for name, (role, before, mib, now) in sorted(rss.items()):
        L.append(f"| {name} | {role} | {before:.1f} | {mib:.1f} | {now:.1f} |")
    worst_rss = max(mib for _, _, mib, _ in rss.values())
    L += [
        "",
        f"Goal < {RSS_GOAL_MIB} MiB per node: {verdict(worst_rss < RSS_GOAL_MIB)} "
        f"(highest {worst_rss:.1f} MiB).",
        "",
        "Where the memory goes: a dump connection holds a 64 KiB window of the entry it reads "
        "(`CURSOR_READ_BYTES_MAX`), a 16 KiB read buffer and an 80 KiB write buffer, so 100 "
        "dump clients cost about 16 MiB. An event larger than the window is sent as it is "
        "read, a window at a time, its CRC32 checked on the way (since the eighth session, "
        "2026-11-26): the bench's binlog opens with sysbench's bulk INSERTs, ANNOTATE_ROWS "
        "and row events of up to 512 KiB, which the 100 dumps, started together, all reach "
        "within moments, and which each dump gathered whole before (a cursor that also kept "
        "that room for the rest of its dump made the follower peak at 90.5 MiB in the "
        "seventh session). Only a QUERY event larger than the window (a long statement) is "
        "still gathered whole, since where its transaction ends depends on its text. The "
        "leader's peak comes from catch-up: the syncer's read buffer "
        "(up to `BATCH_BYTES_MAX` of events), up to `SYNCER_PROPOSALS_IN_FLIGHT_MAX` + 1 "
        "batches of `BATCH_BYTES_MAX`, and per follower up to `RAFT_INFLIGHT_MSGS_MAX` append "
        "messages of `RAFT_MSG_BYTES_MAX` (from the cache of the unapplied tail, or read back "
        "from the log); malloc arenas are limited to two so freed memory is reused, blocks "
        "up to 4 MiB stay in them (no mapping per batch), and a thread hands their free "
        "pages back to the kernel every 10 s (`daemon::memory`): without it the follower "
        "that served the dumps peaked at 67.2 MiB (2026-11-26), the catch-up's freed "
        "memory still resident under the dump clients' own.",
        "",
        f"The whole `make bench` took {int(time.time()) - args.bench_start} s.",
        "",
    ]
    with open(args.out, "a") as f:
        f.write("\n".join(L))
    return {"catch_up_ratio": ratio, "p99_extra": lg["p99_extra"], "dump_worst": worst,
            "resume_after_elect_s": resume_after_elect, "kill_to_resume_s": fo["t_resume_s"],
            "rss_max_mib": worst_rss}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bin", required=True)
    p.add_argument("--dumpclient")
    p.add_argument("--work", required=True)
    p.add_argument("--mariadb-work", required=True,
                   help="where the MariaDB instances' data dirs go (the master's is there)")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--master-pid", type=int, required=True)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--first-file", required=True)
    p.add_argument("--master-file", required=True)
    p.add_argument("--master-pos", type=int, required=True)
    p.add_argument("--total-bytes", type=int, required=True)
    p.add_argument("--bench-start", type=int, required=True)
    p.add_argument("--out")
    p.add_argument("--only", choices=["all", "lag", "catchup", "dumps"], default="all",
                   help="lag: only the lag section, repeated (see lag_only); catchup: only "
                        "the three-node catch-up (see catch_up_only); dumps: only the "
                        "concurrent dumps (see dumps_only)")
    p.add_argument("--bins", "--lag-bins", dest="lag_bins", default="",
                   help="--only lag|catchup|dumps: ferrobus binaries to alternate (default: --bin)")
    p.add_argument("--warm-bytes", type=int, default=0,
                   help="bytes written to a scratch file and deleted before each timed "
                        "catch-up (see rounds.warm_free_memory)")
    p.add_argument("--lag-runs", type=int, default=1)
    p.add_argument("--lag-seconds", type=int, default=LAG_SECONDS)
    p.add_argument("--lag-json", default="")
    args = p.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    procs = Procs(args.work)
    if args.only != "all":
        if args.only == "dumps" and not args.dumpclient:
            raise BenchError("--dumpclient is needed for --only dumps")
        only = {"lag": lag_only, "catchup": catch_up_only, "dumps": dumps_only}[args.only]
        try:
            only(args, procs)
        finally:
            procs.stop_all()
        return
    if not args.dumpclient or not args.out:
        raise BenchError("--dumpclient and --out are needed for the whole benchmark")
    try:
        cu_refs, cu_runs, cluster = catch_up(args, procs)
        lag_runs = []
        for r in range(LAG_RUNS):
            first = len(procs.procs)
            res, _direct, via, follower = lag(args, procs, cluster, f"lag-{r + 1}")
            lag_runs.append(res)
            if r + 1 < LAG_RUNS:
                # The last run's replicas stay: the failover section goes on with them.
                procs.stop_since(first)
        lg = dict(sorted(lag_runs, key=lambda x: x["p99_extra"])[len(lag_runs) // 2])
        lg["runs"] = lag_runs
        rss_lag = {n.name: rounds.vm_hwm_bytes(n.proc.pid) / MIB for n in cluster.nodes}
        dp = dumps(args, follower)
        leader = cluster.leader()
        rss = {n.name: ("leader" if n.name == leader else
                        "follower, binlog server" if n is follower else "follower",
                        rss_lag[n.name], rounds.vm_hwm_bytes(n.proc.pid) / MIB,
                        vm_rss_bytes(n.proc.pid) / MIB)
               for n in cluster.nodes}
        fo = failover(args, procs, cluster, via, follower)
        goals = report(args, rounds.machine(), rounds.versions(args), (cu_refs, cu_runs),
                       lg, dp, fo, rss)
        print("bench: cluster goals " + json.dumps(goals), flush=True)
    finally:
        procs.stop_all()


if __name__ == "__main__":
    try:
        main()
    except BenchError as e:
        print(f"bench: FAILED: {e}", file=sys.stderr)
        sys.exit(1)
