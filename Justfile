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
    # Stop everything first and talk after: when stdout is a pipe whose reader is gone (`| tee` after
    # Ctrl-C, `| head`), a write would fail, so SIGPIPE is ignored here and the messages may be lost.
    stop() {
        trap - INT TERM HUP EXIT
        trap '' PIPE
        set +e
        kill "${pids[@]}" 2>/dev/null
        wait 2>/dev/null
        echo 2>/dev/null
        echo "== stopped ${#pids[@]} processes; logs are in $logs/" 2>/dev/null
        exit 0
    }
    trap stop EXIT
    trap 'exit 0' INT TERM HUP PIPE
    # Ask the registry for its service list over bash's /dev/tcp, so no curl is needed.
    live_adders() {
        exec 3<>/dev/tcp/127.0.0.1/6666 || return 1
        printf 'GET /v1/services HTTP/1.0\r\n\r\n' >&3
        sed -n 's/^add live=\([0-9]*\).*/\1/p' <&3
        exec 3<&-
    }
    echo "== starting the registry on 127.0.0.1:6666, DNS on 127.0.0.1:8600 (log: $logs/registry.log)"
    "$bin" registry --dns 127.0.0.1:8600 2> >(tee "$logs/registry.log" | sed 's/^/   [registry] /' >&2) &
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
    echo "== the same instances over DNS (A, and SRV with the addresses in the additional section):"
    echo "     dig @127.0.0.1 -p 8600 add.service.mini +short"
    echo "     dig @127.0.0.1 -p 8600 _add._tcp.service.mini SRV"
    echo "== and through Consul's API and Prometheus discovery on the registry's port:"
    echo "     curl -s 127.0.0.1:6666/v1/health/service/add; curl -s 127.0.0.1:6666/v1/sd/prometheus"
    echo "== Ctrl-C stops the registry and every adder"
    wait

# Fuzz every target for a fixed number of runs (installs cargo-fuzz if missing; no sanitizer, so stable
# Rust is enough). Logs and new corpus entries stay under fuzz/target and fuzz/corpus.
fuzz runs="200000":
    #!/usr/bin/env bash
    set -euo pipefail
    command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
    cd fuzz
    mkdir -p target
    for target in parse_request routes chunked dns; do
        case "$target" in
            chunked) seeds=seeds/chunked; dict=() ;;
            dns) seeds=seeds/dns; dict=() ;;
            *) seeds=seeds/http; dict=(-dict=http.dict) ;;
        esac
        mkdir -p "corpus/$target"
        echo "== $target: {{runs}} runs"
        if ! cargo fuzz run -s none "$target" "corpus/$target" "$seeds" -- \
                -runs={{runs}} "${dict[@]}" -print_final_stats=1 >"target/$target.log" 2>&1; then
            tail -n 40 "target/$target.log"
            echo "== $target FAILED; the crashing input is under fuzz/artifacts/$target/"
            exit 1
        fi
        grep -E '^(Done [0-9]+ runs|stat::number_of_executed_units|stat::new_units_added)' "target/$target.log" | sed 's/^/   /'
    done
# The shared-store demo: one etcd on loopback (temp data dir), registries on 6666 and 6667 with
# --store etcd, five adders (1111..5555 beating to 6666), the client through 6667; Ctrl-C stops all.
cluster-etcd: build
    #!/usr/bin/env bash
    set -euo pipefail
    bin="{{bin}}"
    logs=target/cluster-etcd
    mkdir -p "$logs"
    if ! command -v etcd >/dev/null 2>&1; then
        echo "== installing etcd-server (apt-get)"
        sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
        $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq etcd-server
    fi
    data=$(mktemp -d -t mini-etcd-XXXXXX)
    pids=()
    # As in `cluster`: stop first, talk after, and survive a stdout whose reader is gone.
    stop() {
        trap - INT TERM HUP EXIT
        trap '' PIPE
        set +e
        kill "${pids[@]}" 2>/dev/null
        wait 2>/dev/null
        rm -rf "$data"
        echo 2>/dev/null
        echo "== stopped ${#pids[@]} processes; logs are in $logs/" 2>/dev/null
        exit 0
    }
    trap stop EXIT
    trap 'exit 0' INT TERM HUP PIPE
    # etcd on 127.0.0.1:23790 (client) and 23800 (peer), so a system etcd on 2379 is left alone.
    etcd_url=http://127.0.0.1:23790
    echo "== starting etcd on $etcd_url (data $data, log: $logs/etcd.log)"
    etcd --name mini --data-dir "$data" \
        --listen-client-urls "$etcd_url" --advertise-client-urls "$etcd_url" \
        --listen-peer-urls http://127.0.0.1:23800 --initial-advertise-peer-urls http://127.0.0.1:23800 \
        --initial-cluster mini=http://127.0.0.1:23800 2>"$logs/etcd.log" &
    pids+=($!)
    for _ in $(seq 1 100); do
        (exec 3<>/dev/tcp/127.0.0.1/23790) 2>/dev/null && break
        sleep 0.1
    done
    for port in 6666 6667; do
        "$bin" registry --listen 127.0.0.1:$port --store etcd --etcd "$etcd_url" \
            2> >(tee "$logs/registry-$port.log" | sed "s/^/   [registry $port] /" >&2) &
        pids+=($!)
    done
    live_adders() {
        exec 3<>/dev/tcp/127.0.0.1/$1 || return 1
        printf 'GET /v1/services HTTP/1.0\r\n\r\n' >&3
        sed -n 's/^add live=\([0-9]*\).*/\1/p' <&3
        exec 3<&-
    }
    sleep 0.3
    for port in 1111 2222 3333 4444 5555; do
        "$bin" adder "$port" --registry 127.0.0.1:6666 2>"$logs/adder-$port.log" &
        pids+=($!)
        echo "== adder on 127.0.0.1:$port, pid $! (log: $logs/adder-$port.log)"
    done
    echo "== waiting until registry 6667 sees all five adders (registered through 6666)"
    for _ in $(seq 1 100); do
        live=$(live_adders 6667 2>/dev/null || true)
        [ "${live:-0}" = 5 ] && break
        for pid in "${pids[@]}"; do
            kill -0 "$pid" 2>/dev/null || { echo "process $pid exited early: is a port in use? see $logs/"; exit 1; }
        done
        sleep 0.1
    done
    [ "${live:-0}" = 5 ] || { echo "6667 did not see five adders within 10 s; see $logs/"; exit 1; }
    echo "== all five adders visible through both registries"
    echo "== mini client 5 6 --repeat 50 --registry 127.0.0.1:6667"
    "$bin" client 5 6 --repeat 50 --registry 127.0.0.1:6667
    echo
    echo "== running. Try: curl 127.0.0.1:6667/v1/services/add ; curl 127.0.0.1:6667/health"
    echo "     kill ${pids[0]}    # etcd: lookups keep answering from each registry's copy, /health says degraded"
    echo "== Ctrl-C stops etcd, both registries and every adder"
    wait
# Measure mini against nginx and etcd on loopback and write BENCH.md (about 4-5 minutes; installs wrk,
# nginx-light and etcd-server with apt-get when missing).
bench:
    bash benches/run.sh
