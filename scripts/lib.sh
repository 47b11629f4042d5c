# Shell helpers shared by scripts/demo.sh and scripts/bench.sh (sourced, not run).

# A free TCP port on 127.0.0.1, below the kernel's ephemeral range (see free_port in
# scripts/bench/rounds.py).
free_port() {
    python3 -c 'import sys; sys.path.insert(0, "scripts/bench"); import rounds; print(rounds.free_port())'
}

# Stops the given pids: SIGTERM to all, then up to 15 s each to exit, then SIGKILL.
stop_pids() {
    local pid
    for pid in "$@"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "$@"; do
        for _ in $(seq 1 150); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
    done
}
