# mini: a small service registry, a demo adder and a client.
set shell := ["bash", "-euo", "pipefail", "-c"]

bin := "target/release/mini"

# List the recipes.
default:
    @just --list

# Build the release binary.
build:
    cargo build --release

# Run the whole test suite (what CI runs).
test:
    cargo test

# Format, lint and test, as before every commit.
check:
    cargo fmt --all -- --check
    cargo clippy --all-targets -- -D warnings
    cargo test

# The demo: a registry on 127.0.0.1:6666, adders on 1111..5555, a client; Ctrl-C stops everything.
cluster: build
    #!/usr/bin/env bash
    set -euo pipefail
    bin="{{bin}}"
    logs=target/cluster
    mkdir -p "$logs"
    pids=()
    stop() {
        trap - INT TERM EXIT
        echo
        echo "== stopping ${#pids[@]} processes"
        kill "${pids[@]}" 2>/dev/null || true
        wait 2>/dev/null || true
        echo "== stopped; logs are in $logs/"
    }
    trap stop EXIT
    trap 'exit 0' INT TERM
    # Ask the registry for its service list over bash's /dev/tcp, so no curl is needed.
    live_adders() {
        exec 3<>/dev/tcp/127.0.0.1/6666 || return 1
        printf 'GET /v1/services HTTP/1.0\r\n\r\n' >&3
        sed -n 's/^add live=\([0-9]*\).*/\1/p' <&3
        exec 3<&-
    }
    echo "== starting the registry on 127.0.0.1:6666 (log: $logs/registry.log)"
    "$bin" registry 2> >(tee "$logs/registry.log" | sed 's/^/   [registry] /' >&2) &
    pids+=($!)
    for port in 1111 2222 3333 4444 5555; do
        "$bin" adder "$port" 2>"$logs/adder-$port.log" &
        pids+=($!)
        echo "== adder on 127.0.0.1:$port, pid $! (log: $logs/adder-$port.log)"
    done
    echo "== waiting until all five adders are registered"
    for _ in $(seq 1 100); do
        live=$(live_adders 2>/dev/null || true)
        [ "${live:-0}" = 5 ] && break
        for pid in "${pids[@]}"; do
            kill -0 "$pid" 2>/dev/null || { echo "process $pid exited early: is port 6666 or 1111..5555 in use? see $logs/"; exit 1; }
        done
        sleep 0.1
    done
    [ "${live:-0}" = 5 ] || { echo "the adders did not register within 10 s; see $logs/"; exit 1; }
    echo "== all five adders registered"
    echo "== mini client 5 6"
    "$bin" client 5 6
    echo "== mini client 5 6 --repeat 50 (how many calls each adder served)"
    "$bin" client 5 6 --repeat 50
    echo
    echo "== running. In another terminal, kill two adders and call again; every call is still answered:"
    echo "     kill ${pids[4]} ${pids[5]}    # the adders on 4444 and 5555"
    echo "     $bin client 5 6 --repeat 50"
    echo "== Ctrl-C stops the registry and every adder"
    wait

# Measure mini against nginx and etcd on loopback and write BENCH.md (about 4 minutes; installs wrk,
# nginx-light and etcd-server with apt-get when missing).
bench:
    bash benches/run.sh
