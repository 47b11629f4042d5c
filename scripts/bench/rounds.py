#!/usr/bin/env python3
"""Measured rounds of `make bench` (called by scripts/bench.sh), then BENCHMARKS.md.

Given a still MariaDB master whose binlog scripts/bench.sh has filled, it alternates, for
--rounds rounds:
  reference  `mariadb-binlog --read-from-remote-server --raw --to-last-log` fetches every
             binlog file into a fresh directory; timed around the whole process.
  ferrobus   a fresh data dir and a release `ferrobus serve`; timed from the PUT
             /binlog/syncer/start until GET /binlog/syncer/status (polled every 10 ms) shows
             the master's SHOW MASTER STATUS file and position. Then peak RSS (VmHWM), CPU
             time, bytes of DATA_DIR/log, and a SIGTERM that must end the node with exit 0.
It writes the pid of the running node to WORK/ferrobus.pid so the shell's trap can stop it
too, and stops it itself on any failure. It must not touch the master's data or anything
outside WORK except the report file.
"""

import argparse
import json
import os
import platform
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import http.client as httpclient
import urllib.parse

MIB = 1024 * 1024
BINLOG_MAGIC_BYTES = 4
POLL_PERIOD_S = 0.010
HEALTH_TIMEOUT_S = 30
CATCH_UP_TIMEOUT_S = 300
REFERENCE_TIMEOUT_S = 300
STOP_TIMEOUT_S = 30
HTTP_TIMEOUT_S = 5
RATIO_GOAL_MIN = 0.8
DISK_GOAL_MAX = 1.05


class BenchError(Exception):
    pass


# Ports for the servers the bench starts come from below the kernel's ephemeral range
# (net.ipv4.ip_local_port_range): a port bound and released inside it can become the source
# port of any outgoing connection (a replica's, a node's) before the server binds it, and the
# server then fails with "Address already in use" (seen once in a lag run).
PORTS_BELOW_EPHEMERAL = 10000


def free_port():
    """A TCP port on 127.0.0.1 that is free now and outside the ephemeral range."""
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        ephemeral_low = int(f.read().split()[0])
    low = max(1024, ephemeral_low - PORTS_BELOW_EPHEMERAL)
    for _ in range(1000):
        port = random.randint(low, ephemeral_low - 1)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise BenchError(f"no free port in {low}..{ephemeral_low - 1} after 1000 tries")


# One kept-alive connection per admin address: the catch-up polls the status every
# POLL_PERIOD_S, and a new connection (and urllib's machinery) per poll would cost the
# measured nodes CPU time on these 2 shared cores.
_CONNS = {}


def http(method, url, body=None, timeout=HTTP_TIMEOUT_S):
    """One admin API request: (HTTP status, decoded JSON reply), errors included."""
    parts = urllib.parse.urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"} if data is not None else {}
    while True:
        conn = _CONNS.pop(parts.netloc, None)
        reused = conn is not None
        if conn is None:
            conn = httpclient.HTTPConnection(parts.netloc, timeout=timeout)
        elif conn.sock is not None:
            # A kept socket has the timeout of the call that opened it.
            conn.sock.settimeout(timeout)
        try:
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            reply = resp.read()
        except (OSError, httpclient.HTTPException) as e:
            conn.close()
            if reused and isinstance(e, (httpclient.RemoteDisconnected, ConnectionResetError,
                                         BrokenPipeError)):
                # The node closed the kept connection (or restarted) before taking the
                # request: once more, on a new one. Never after a timeout (it may have
                # taken it).
                continue
            if isinstance(e, OSError):
                raise
            raise OSError(str(e)) from e
        if resp.will_close:
            conn.close()
        else:
            _CONNS[parts.netloc] = conn
        return resp.status, json.loads(reply or b"null")


def cpu_seconds(pid):
    """utime + stime of a live process, from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def minor_faults(pid):
    """Minor page faults of a live process so far (every thread), from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[7])


def machine_cpu():
    """The machine's CPU time counters (ticks) from the first line of /proc/stat."""
    with open("/proc/stat") as f:
        fields = f.readline().split()
    names = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
    return {name: int(v) for name, v in zip(names, fields[1:])}


def steal_percent(before, after):
    """Share of the machine's CPU time the hypervisor gave to other guests between two
    `machine_cpu()` readings: how busy the host was, whatever ran here."""
    delta = {k: after[k] - before[k] for k in before}
    total = sum(delta.values())
    return 100.0 * delta["steal"] / total if total else 0.0


def proc_status_bytes(pid, field):
    """A kB field of /proc/PID/status (VmHWM, VmRSS, ...) in bytes."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
    raise BenchError(f"no {field} in /proc/{pid}/status")


def vm_hwm_bytes(pid):
    return proc_status_bytes(pid, "VmHWM")


def tree_bytes(path):
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            total += os.path.getsize(os.path.join(root, name))
    return total


def warm_free_memory(directory, nbytes):
    """Writes `nbytes` into a scratch file in `directory` and deletes it, right before a
    timed run. This VM reports memory that stays free for a moment to its host
    (virtio-balloon free page reporting), which takes it back, and pages cold memory out
    (DAMON, in the guest); the first write into such a page then costs a host fault
    (measured: 324 MiB into the page cache took 0.4-0.9 s of CPU on such pages, 0.06 s on
    pages freed a moment before). Freeing memory just before the run hands the run pages the
    host still backs, so the timing measures the program rather than the host's memory
    reclaim; the reference and ferrobus both get it. Limits: the pages stay backed for about
    a second or two (a run much longer than the default one outlasts it), and the scratch
    file costs no disk I/O only while it stays under the kernel's dirty-page thresholds (a
    few GiB here; `BENCH_WARM_MB` sets the size). Returns the seconds it took."""
    if nbytes <= 0:
        return 0.0
    chunk = b"\xa5" * (1 << 20)
    path = os.path.join(directory, "warm-free-memory.tmp")
    t0 = time.monotonic()
    with open(path, "wb", buffering=0) as f:
        for _ in range((nbytes + len(chunk) - 1) // len(chunk)):
            f.write(chunk)
    os.unlink(path)
    return time.monotonic() - t0


def warm_note(nbytes):
    """The method's sentence on warm_free_memory, for the report."""
    if nbytes <= 0:
        return ("No memory was freed before the timed runs (`BENCH_WARM_MB=0`): on this VM "
                "a run that writes into memory the host has taken back is slower.")
    return (f"Right before each timed run, reference and ferrobus alike, the bench writes "
            f"{nbytes / MIB:.0f} MiB to a scratch file and deletes it (no disk I/O), so that "
            "the run writes into memory the VM's host still backs: this VM reports memory "
            "that stays free for a moment to its host, which takes it back (virtio-balloon "
            "free page reporting), and the first write into such a page costs a host fault — "
            "324 MiB written into the page cache took 0.4–0.9 s of CPU on such pages and "
            "0.06 s on pages freed a moment before (2026-11-26; `BENCH_WARM_MB=0` turns "
            "this off).")


def run_reference(args, rdir):
    out = os.path.join(rdir, "ref")
    os.makedirs(out)
    cmd = [
        "mariadb-binlog", "--no-defaults", "--read-from-remote-server", "--raw",
        "--to-last-log", "-h127.0.0.1", f"-P{args.port}", "-urepl", "-preplpass",
        f"--result-file={out}/", args.first_file,
    ]
    warm_free_memory(rdir, args.warm_bytes)
    master_cpu0 = cpu_seconds(args.master_pid)
    with open(os.path.join(rdir, "mariadb-binlog.log"), "wb") as log:
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            proc.kill()
            raise
        seconds = time.monotonic() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise BenchError(f"mariadb-binlog exited {proc.returncode}")
    fetched = tree_bytes(out)
    if fetched != args.total_bytes:
        raise BenchError(f"mariadb-binlog wrote {fetched} bytes, master has {args.total_bytes}")
    shutil.rmtree(out)
    return {
        "seconds": seconds,
        "mib_s": args.total_bytes / MIB / seconds,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "master_cpu_s": cpu_seconds(args.master_pid) - master_cpu0,
    }


def wait_healthy(admin, proc):
    deadline = time.monotonic() + HEALTH_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"ferrobus exited {proc.returncode} before it was healthy")
        try:
            code, reply = http("GET", f"http://{admin}/health")
            if code == 200:
                # A build that says which process answers must be the one started here.
                pid = (reply.get("data") or {}).get("pid") if isinstance(reply, dict) else None
                if pid is not None and pid != proc.pid:
                    raise BenchError(f"{admin} is answered by pid {pid}, not the node started "
                                     f"here ({proc.pid}): another process holds the port")
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    raise BenchError("ferrobus admin API not healthy in time")


def wait_caught_up(admin, proc, args):
    """Polls status until it shows the master's position; returns the last status."""
    url = f"http://{admin}/binlog/syncer/status"
    deadline = time.monotonic() + CATCH_UP_TIMEOUT_S
    while True:
        code, reply = http("GET", url)
        if code != 200:
            raise BenchError(f"status answered {code}: {reply}")
        st = reply["data"]
        if (st.get("last_binlog_file") == args.master_file
                and st.get("last_file_position") == args.master_pos):
            return st
        if st.get("status") == "error":
            raise BenchError(f"syncer error: {st.get('last_error')}")
        if proc.poll() is not None:
            raise BenchError(f"ferrobus exited {proc.returncode} while syncing")
        if time.monotonic() > deadline:
            raise BenchError(f"not caught up after {CATCH_UP_TIMEOUT_S}s; status {st}")
        time.sleep(POLL_PERIOD_S)


def stop_node(proc):
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise BenchError(f"ferrobus did not stop within {STOP_TIMEOUT_S}s of SIGTERM")


def run_ferrobus(args, rdir):
    data_dir = os.path.join(rdir, "node")
    admin = f"127.0.0.1:{free_port()}"
    env = dict(os.environ, RUST_LOG="warn")
    pid_file = os.path.join(args.work, "ferrobus.pid")
    with open(os.path.join(rdir, "ferrobus.log"), "wb") as log:
        proc = subprocess.Popen(
            [args.bin, "serve", "--data-dir", data_dir, "--admin-addr", admin],
            stdout=log, stderr=subprocess.STDOUT, env=env)
    with open(pid_file, "w") as f:
        f.write(str(proc.pid))
    try:
        wait_healthy(admin, proc)
        start = {
            "syncer_id": 1001, "mysql_addr": f"127.0.0.1:{args.port}",
            "mysql_user": "repl", "mysql_password": "replpass",
        }
        warm_free_memory(rdir, args.warm_bytes)
        cpu0 = cpu_seconds(proc.pid)
        master_cpu0 = cpu_seconds(args.master_pid)
        t0 = time.monotonic()
        code, reply = http("PUT", f"http://{admin}/binlog/syncer/start", start)
        if code != 200:
            raise BenchError(f"syncer/start answered {code}: {reply}")
        st = wait_caught_up(admin, proc, args)
        seconds = time.monotonic() - t0
        cpu = cpu_seconds(proc.pid) - cpu0
        master_cpu = cpu_seconds(args.master_pid) - master_cpu0
        rss = vm_hwm_bytes(proc.pid)
        threads = thread_cpu(proc.pid)
        code = stop_node(proc)
        if code != 0:
            raise BenchError(f"ferrobus exited {code} after SIGTERM (wanted 0)")
    except BaseException:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        raise
    finally:
        os.remove(pid_file)
    disk = tree_bytes(os.path.join(data_dir, "log"))
    shutil.rmtree(data_dir)
    payload = args.total_bytes - BINLOG_MAGIC_BYTES * args.file_count
    return {
        "seconds": seconds,
        "mib_s": args.total_bytes / MIB / seconds,
        "events": st["events"],
        "bytes": st["bytes"],
        "events_s": st["events"] / seconds,
        "rss_mib": rss / MIB,
        "disk_bytes": disk,
        "disk_ratio": disk / payload,
        "cpu_s": cpu,
        "master_cpu_s": master_cpu,
        "threads": threads,
    }


def thread_cpu(pid):
    """CPU seconds per thread name, summed, to show where the node spent its time."""
    ticks = os.sysconf("SC_CLK_TCK")
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                head, tail = f.read().rsplit(")", 1)
        except OSError:
            continue
        name = head.split("(", 1)[1]
        fields = tail.split()
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / ticks
    return out


def machine():
    model = "unknown"
    mem_kib = 0
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    return {
        "nproc": subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip(),
        "model": model,
        "mem_gib": mem_kib / 1024 / 1024,
        "kernel": f"{platform.system()} {platform.release()}",
    }


def versions(args):
    def first_line(cmd):
        try:
            r = subprocess.run(cmd, capture_output=True, text=True)
            return " ".join((r.stdout or r.stderr).strip().splitlines()[0].split())
        except (OSError, IndexError):
            return "unknown"
    return {
        "ferrobus": first_line([args.bin, "--version"]),
        "mariadbd": first_line(["mariadbd", "--version"]),
        "sysbench": first_line(["sysbench", "--version"]),
        "rustc": first_line(["rustc", "--version"]),
    }


def row(name, values, fmt):
    cells = [fmt.format(statistics.median(values))] + [fmt.format(v) for v in values]
    return f"| {name} | " + " | ".join(cells) + " |"


def write_report(args, refs, nodes, path):
    ratios = [n["mib_s"] / r["mib_s"] for r, n in zip(refs, nodes)]
    ratio = statistics.median(ratios)
    disk = statistics.median(n["disk_ratio"] for n in nodes)
    m = machine()
    v = versions(args)
    date = subprocess.run(["date", "-u"], capture_output=True, text=True).stdout.strip()
    n = len(refs)
    head = "| | median | " + " | ".join(f"round {i + 1}" for i in range(n)) + " |"
    sep = "|---|---:|" + "---:|" * n
    verdict = lambda ok: "met" if ok else "**not met**"  # noqa: E731
    threads = {}
    for node in nodes:
        for name, s in node["threads"].items():
            threads.setdefault(name, []).append(s)
    thread_list = ", ".join(
        f"`{name}` {statistics.median(s):.2f} s"
        for name, s in sorted(threads.items(), key=lambda kv: -statistics.median(kv[1])))
    lines = [
        "# Benchmarks",
        "",
        "Generated by `make bench` (scripts/bench.sh); the whole file is rewritten on every run.",
        "",
        f"- Date: {date}",
        f"- Machine: {m['nproc']} CPUs ({m['model']}), {m['mem_gib']:.1f} GiB memory, "
        f"kernel {m['kernel']}",
        f"- Software: {v['ferrobus']} (release build), {v['mariadbd']}, {v['sysbench']}, "
        f"{v['rustc']}",
        f"- Binlog: {args.total_bytes} bytes ({args.total_bytes / MIB:.1f} MiB) in "
        f"{args.file_count} files, {nodes[0]['events']} events as counted by ferrobus "
        f"(`events` in syncer status), made by sysbench oltp_write_only "
        f"({args.sysbench}) in {args.load_seconds} s of load",
        f"- Rounds: {n}, alternating reference then ferrobus; the bench had run "
        f"{int(time.time()) - args.bench_start} s at the end of this section",
        "",
        "## Catch-up of the whole binlog from a MariaDB master",
        "",
        head,
        sep,
        row("reference `mariadb-binlog --raw` MiB/s", [r["mib_s"] for r in refs], "{:.1f}"),
        row("ferrobus MiB/s", [x["mib_s"] for x in nodes], "{:.1f}"),
        row(f"ratio ferrobus / reference (goal ≥ {RATIO_GOAL_MIN})", ratios, "{:.2f}"),
        row("ferrobus events/s", [x["events_s"] for x in nodes], "{:,.0f}"),
        row("ferrobus peak RSS (VmHWM) MiB", [x["rss_mib"] for x in nodes], "{:.1f}"),
        row(f"ferrobus disk bytes per binlog byte (goal ≤ {DISK_GOAL_MAX})",
            [x["disk_ratio"] for x in nodes], "{:.4f}"),
        row("reference seconds", [r["seconds"] for r in refs], "{:.2f}"),
        row("ferrobus seconds", [x["seconds"] for x in nodes], "{:.2f}"),
        row("reference client CPU s", [r["cpu_s"] for r in refs], "{:.2f}"),
        row("ferrobus CPU s", [x["cpu_s"] for x in nodes], "{:.2f}"),
        row("mariadbd CPU s during reference", [r["master_cpu_s"] for r in refs], "{:.2f}"),
        row("mariadbd CPU s during ferrobus", [x["master_cpu_s"] for x in nodes], "{:.2f}"),
        "",
        f"Goals: ratio ≥ {RATIO_GOAL_MIN}: {verdict(ratio >= RATIO_GOAL_MIN)} "
        f"(median {ratio:.2f}); disk ≤ {DISK_GOAL_MAX}: {verdict(disk <= DISK_GOAL_MAX)} "
        f"(median {disk:.4f}).",
        "",
        f"ferrobus CPU by thread (median over rounds): {thread_list}.",
        "",
        "## What was measured",
        "",
        "A throwaway MariaDB master (ROW format, CRC32 checksums, `sync_binlog=0`, "
        "`innodb_flush_log_at_trx_commit=0`, 64 MiB binlog files) on 127.0.0.1 was filled "
        "by sysbench and then left idle, so both clients read the same finished binlog from "
        "the master's page cache over loopback TCP. The reference is the time for "
        "`mariadb-binlog --read-from-remote-server --raw --to-last-log` to copy every "
        "binlog file to local files (no fsync). The ferrobus figure is the time from "
        "`PUT /binlog/syncer/start` on a freshly started release node with an empty data "
        "dir until `GET /binlog/syncer/status` (polled every 10 ms) reports the master's "
        "`SHOW MASTER STATUS` file and position; it includes connecting, the dump, checking "
        "each event's CRC32, grouping events into transactions and making them durable in "
        "the node's log (fsync per batch) before the position is published. MiB/s is the "
        "master's total binlog bytes (SHOW BINARY LOGS) over those seconds; events/s uses "
        "the node's own event count. Peak RSS is VmHWM just before the node is stopped with "
        "SIGTERM (it must exit 0). Disk is the sum of file sizes under DATA_DIR/log divided "
        "by the binlog bytes less each file's 4-byte magic. Both programs share the 2 CPUs "
        "with the master, which does the sending in both cases. "
        + warm_note(args.warm_bytes),
        "",
    ]
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write("\n".join(lines))
    os.replace(tmp, path)
    return ratio, disk


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bin", required=True)
    p.add_argument("--work", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--master-pid", type=int, required=True)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--first-file", required=True)
    p.add_argument("--master-file", required=True)
    p.add_argument("--master-pos", type=int, required=True)
    p.add_argument("--total-bytes", type=int, required=True)
    p.add_argument("--file-count", type=int, required=True)
    p.add_argument("--load-seconds", type=int, required=True)
    p.add_argument("--bench-start", type=int, required=True)
    p.add_argument("--sysbench", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--warm-bytes", type=int, default=0,
                   help="bytes written to a scratch file and deleted before each timed "
                        "fetch (see warm_free_memory)")
    args = p.parse_args()
    # SIGTERM from the shell's trap becomes an exception, so the node is stopped on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    refs, nodes = [], []
    for i in range(args.rounds):
        rdir = os.path.join(args.work, f"round-{i + 1}")
        os.makedirs(rdir)
        r = run_reference(args, rdir)
        refs.append(r)
        print(f"bench: round {i + 1} reference {r['seconds']:.2f} s = {r['mib_s']:.1f} MiB/s",
              flush=True)
        n = run_ferrobus(args, rdir)
        nodes.append(n)
        print(f"bench: round {i + 1} ferrobus  {n['seconds']:.2f} s = {n['mib_s']:.1f} MiB/s, "
              f"{n['events_s']:,.0f} events/s, RSS {n['rss_mib']:.1f} MiB, "
              f"disk {n['disk_ratio']:.4f}, CPU {n['cpu_s']:.2f} s "
              f"(master {n['master_cpu_s']:.2f} s)", flush=True)
    if len({n["events"] for n in nodes}) != 1:
        raise BenchError(f"event counts differ between rounds: {[n['events'] for n in nodes]}")
    ratio, disk = write_report(args, refs, nodes, args.out)
    print(f"bench: median ratio {ratio:.2f} (goal >= {RATIO_GOAL_MIN}), "
          f"disk {disk:.4f} (goal <= {DISK_GOAL_MAX})", flush=True)


if __name__ == "__main__":
    try:
        main()
    except BenchError as e:
        print(f"bench: FAILED: {e}", file=sys.stderr)
        sys.exit(1)
