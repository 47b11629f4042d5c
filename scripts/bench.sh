#!/usr/bin/env bash
# Benchmark (issue 2): catch-up ingest of a >= 100 MB sysbench binlog into a fresh node,
# next to mariadb-binlog --raw fetching the same binlog; writes BENCHMARKS.md.
# Not written yet.
set -euo pipefail
echo "bench: not yet implemented (scripts/bench.sh is a placeholder)" >&2
exit 1
