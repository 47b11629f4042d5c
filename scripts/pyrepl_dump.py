#!/usr/bin/env python3
"""Dump a MariaDB binlog stream with python-mysql-replication, one line per event.

Used by the end-to-end tests as an independent client: the same command is run against
the real master and against ferrobus, and the outputs must be equal.

Modes (always blocking):
- MariaDB GTID (default): @slave_connect_state = --start-gtid, empty = from the oldest binlog.
- MySQL (--flavour mysql): COM_BINLOG_DUMP_GTID with auto_position = --start-gtid (a MySQL
  GTID set), or, with --log-file and --log-pos, COM_BINLOG_DUMP by file and position.
Stops after the transaction of --stop-gtid is complete (its XID, or the COMMIT / DDL query
event after its GTID event). Exits 2 on timeout, 1 on any error.

Output lines: "<EventClass> <gtid>" for GTID events, "<EventClass> <log_pos>" for the others
(log_pos is the end position of the event in the master's file, as sent). Heartbeats are
skipped. Prints nothing else on stdout; diagnostics go to stderr.

It must not write to the server, and it must not run forever.
"""

import argparse
import signal
import sys

from pymysqlreplication import BinLogStreamReader
from pymysqlreplication.event import (
    GtidEvent,
    HeartbeatLogEvent,
    MariadbGtidEvent,
    QueryEvent,
    XidEvent,
)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--password", default="")
    p.add_argument("--server-id", type=int, default=4242)
    p.add_argument("--flavour", choices=["mariadb", "mysql"], default="mariadb")
    p.add_argument(
        "--start-gtid",
        default="",
        help="MariaDB GTID list or MySQL GTID set; empty = from start",
    )
    p.add_argument("--log-file", help="MySQL mode: start file (with --log-pos)")
    p.add_argument("--log-pos", type=int, help="MySQL mode: start position")
    p.add_argument("--stop-gtid", required=True, help="stop after this transaction")
    p.add_argument("--timeout", type=int, default=120, help="seconds before giving up")
    return p.parse_args()


def on_timeout(_signum, _frame):
    sys.stderr.write("pyrepl_dump: timeout before reaching the stop GTID\n")
    sys.stdout.flush()
    sys.exit(2)


def ends_transaction(event):
    if isinstance(event, XidEvent):
        return True
    if isinstance(event, QueryEvent):
        return event.query.strip().upper() != "BEGIN"
    return False


def open_stream(args, settings):
    common = {
        "connection_settings": settings,
        "server_id": args.server_id,
        "blocking": True,
        "enable_logging": False,
        "ignore_decode_errors": True,
    }
    if args.flavour == "mariadb":
        return BinLogStreamReader(is_mariadb=True, auto_position=args.start_gtid, **common)
    if args.log_file is not None:
        return BinLogStreamReader(
            log_file=args.log_file,
            log_pos=args.log_pos if args.log_pos is not None else 4,
            resume_stream=True,
            **common,
        )
    return BinLogStreamReader(auto_position=args.start_gtid, **common)


def main():
    args = parse_args()
    signal.signal(signal.SIGALRM, on_timeout)
    signal.alarm(args.timeout)
    settings = {
        "host": args.host,
        "port": args.port,
        "user": args.user,
        "passwd": args.password,
        "read_timeout": args.timeout,
        "connect_timeout": 10,
    }
    stream = open_stream(args, settings)
    in_stop_transaction = False
    try:
        for event in stream:
            if isinstance(event, HeartbeatLogEvent):
                continue
            name = type(event).__name__
            if isinstance(event, (MariadbGtidEvent, GtidEvent)):
                print(f"{name} {event.gtid}")
                in_stop_transaction = event.gtid == args.stop_gtid
                continue
            print(f"{name} {event.packet.log_pos}")
            if in_stop_transaction and ends_transaction(event):
                break
    finally:
        stream.close()
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except SystemExit:
        raise
    except Exception as exc:  # report any library or network error as a failure
        sys.stderr.write(f"pyrepl_dump: {type(exc).__name__}: {exc}\n")
        sys.exit(1)
