#!/usr/bin/env bash
# `just bench`: measure mini on loopback against nginx, etcd and dnsmasq, and write BENCH.md.
#
# Installs wrk, nginx-light, etcd-server, dnsperf and dnsmasq-base with apt when they are missing, builds the release binary
# and the `mini_bench` program (benches/mini_bench/), starts every server on 127.0.0.1 on free ports,
# stops everything it started on exit (trap), and writes BENCH.md only when every section succeeded.
# Logs and raw outputs stay in $CARGO_TARGET_DIR/bench/ (target/bench/ by default).
#
# Knobs (environment), for quick trials; BENCH.md states the values used:
#   BENCH_ROUNDS=3        lookup rounds (each round runs mini, nginx, etcd in turn)
#   BENCH_WRK_SECONDS=5   length of one wrk run
#   BENCH_DNS_SECONDS=5   length of one dnsperf run
#   BENCH_ONLY="lookup heartbeat silence footprint probe watch lb etcd-lookup etcd-propagation etcd-scale pick dns lookup-table"
#                         sections to run (one section alone: BENCH_ONLY=pick BENCH_OUT=/tmp/pick.md;
#                         `lookup-table` alone rewrites only its own part of BENCH.md)
#   BENCH_SCALE_INSTANCES=100000  instances of the etcd-scale section
#   BENCH_OUT=BENCH.md    where to write the report
#   BENCH_TABLE_ROUNDS=3  lookup-table rounds (each runs every server at every load, alternating)
#   BENCH_TABLE_SECONDS=4 length of one lookup-table wrk run (counting runs: BENCH_TABLE_COUNT_SECONDS=2)
#   BENCH_TABLE_BASE=PATH another mini binary measured beside the others in the lookup table (before/after)
#   BENCH_TABLE_LOADS="-t1 -c16;-t2 -c64;-t2 -c256"  the lookup table's wrk loads
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${BENCH_ROUNDS:-3}
WRK_SECONDS=${BENCH_WRK_SECONDS:-5}
ONLY=${BENCH_ONLY:-lookup heartbeat silence footprint probe watch lb etcd-lookup etcd-propagation etcd-scale pick dns lookup-table}
OUT=${BENCH_OUT:-BENCH.md}
# Lookup load: one wrk thread, 50 keep-alive connections, for every server alike.
WRK_THREADS=1
WRK_CONNECTIONS=50
# Heartbeat ingest: instances at the last step, renewed every BEAT_PERIOD for BEAT_SECONDS.
HEARTBEAT_STEPS=1000,10000,100000
BEAT_PERIOD=5s
BEAT_SECONDS=15s
BEAT_WORKERS=64
# Probe cost: targets probed at the registry's default timings, CPU measured over PROBE_WINDOW seconds.
PROBE_TARGETS=10000
PROBE_WINDOW=15
# Descriptors the probe targets need: one listener each, plus pooled and in-flight connections.
NOFILE=65536
# A probe interval no run reaches, so the lookup and heartbeat registries never probe their fake instances.
NO_PROBES=1440m
# Watch latency: watchers per phase (one `mini_bench watch` process), changes timed per phase.
WATCH_COUNTS=1,1000
WATCH_CHANGES=20
# Target of the watch and propagation sections (issue): a change reaches a waiting watcher within these.
WATCH_TARGET_MS=50
PROPAGATION_TARGET_MS=100
# Balancing: client runs of LB_CALLS calls, LB_CONCURRENCY in flight, per strategy and round, with two
# adders and one that waits LB_DELAY before each answer.
LB_STRATEGIES=random,round-robin,p2c
LB_ROUNDS=3
LB_CALLS=600
LB_CONCURRENCY=8
LB_DELAY=40ms
# p2c passes when it sends at most this fraction of random's share to the slow adder.
LB_P2C_MAX_RATIO=0.5
# The etcd store at scale: instances beating every BEAT_PERIOD for BEAT_SECONDS through two etcd-backed
# registries (and through one in-memory registry for reference), registered and renewed with SCALE_TTL.
SCALE_INSTANCES=${BENCH_SCALE_INSTANCES:-100000}
SCALE_TTL=60s
# Registrations in flight at once (adders registering together, one connection each).
SCALE_REGISTER_WORKERS=${BENCH_SCALE_REGISTER_WORKERS:-256}
# Targets (issue 14): beat p50/p99 within this factor of memory's, etcd requests/s in steady state,
# registrations/s, and p99 of a registration's visibility through the other registry.
SCALE_BEAT_MAX_RATIO=1.5
SCALE_STEADY_MAX_RPS=50
SCALE_REGISTER_MIN_RATE=10000
SCALE_VISIBILITY_MAX_MS=100
# Pick cost and memory with specs (issue 11): instances in the service, most picks of each kind timed
# (each kind runs for 1 s or until that many).
PICK_INSTANCES=100000
PICK_PICKS=20000000
# DNS: DNS_INSTANCES instances of `add` on 127.0.0.1..N:8000, dnsperf with DNS_CLIENTS clients (EDNS0, so
# neither server truncates) for DNS_SECONDS per run; the Consul listing against mini's own with wrk
# -t1 -c$DOOR_CONNECTIONS for DOOR_SECONDS per run. Target: mini at least as fast as dnsmasq.
DNS_SECONDS=${BENCH_DNS_SECONDS:-5}
DNS_INSTANCES=10
DNS_CLIENTS=4
DOOR_CONNECTIONS=16
DOOR_SECONDS=4
# Lookup table (issue 13): mini (default settings, and MINI_THREADS=1) against nginx (1 worker, and
# worker_processes auto) at these wrk loads, lookups and heartbeats, in alternating rounds.
TABLE_ROUNDS=${BENCH_TABLE_ROUNDS:-3}
TABLE_SECONDS=${BENCH_TABLE_SECONDS:-4}
TABLE_COUNT_SECONDS=${BENCH_TABLE_COUNT_SECONDS:-2}
IFS=';' read -ra TABLE_LOADS <<<"${BENCH_TABLE_LOADS:--t1 -c16;-t2 -c64;-t2 -c256}"
TABLE_BASE=${BENCH_TABLE_BASE:-}

step() { printf '\n== %s\n' "$*" >&2; }
wants() { [[ " $ONLY " == *" $1 "* ]]; }

# --- tools -------------------------------------------------------------------------------------------

install_missing() {
    local need=()
    command -v wrk >/dev/null 2>&1 || need+=(wrk)
    command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
    command -v etcd >/dev/null 2>&1 || need+=(etcd-server)
    if wants dns; then
        command -v dnsperf >/dev/null 2>&1 || need+=(dnsperf)
        [ -x /usr/sbin/dnsmasq ] || need+=(dnsmasq-base)
    fi
    [ ${#need[@]} -eq 0 ] && return 0
    step "installing ${need[*]} with apt-get"
    local sudo=()
    [ "$(id -u)" -ne 0 ] && sudo=(sudo)
    # Keep the packages' own services (nginx on :80, etcd on :2379) from starting: we start our own.
    local policy=/usr/sbin/policy-rc.d own_policy=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
        "${sudo[@]}" chmod +x "$policy"
        own_policy=1
    fi
    "${sudo[@]}" apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends \
        "${need[@]}" >/dev/null
    [ "$own_policy" = 1 ] && "${sudo[@]}" rm -f "$policy"
    return 0
}

# --- processes ---------------------------------------------------------------------------------------

pids=()

# The process and all its descendants, children first.
tree() {
    local child
    for child in $(cat /proc/"$1"/task/*/children 2>/dev/null); do tree "$child"; done
    echo "$1"
}

# Stops the processes and their descendants: TERM, then KILL what is left after a moment.
stop() {
    local all=() p
    for p in "$@"; do mapfile -t -O "${#all[@]}" all < <(tree "$p"); done
    [ ${#all[@]} -eq 0 ] && return 0
    kill -TERM "${all[@]}" 2>/dev/null || true
    for _ in $(seq 20); do
        kill -0 "${all[@]}" 2>/dev/null || break
        sleep 0.05
    done
    kill -KILL "${all[@]}" 2>/dev/null || true
    wait "$@" 2>/dev/null || true
}

# Temporary directories (etcd data) removed on exit.
temp_dirs=()

cleanup() {
    trap - EXIT INT TERM
    [ ${#pids[@]} -gt 0 ] && stop "${pids[@]}"
    [ ${#temp_dirs[@]} -gt 0 ] && rm -rf "${temp_dirs[@]}"
    return 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Waits for a role's `listening on ADDR` line in its log and prints ADDR. Only a whole line counts
# (`read` fails on a last line without its newline): mini's stderr is unbuffered, a line may come in pieces.
listen_addr() {
    local log=$1 pid=$2 line
    for _ in $(seq 1000); do
        if [ -f "$log" ]; then
            while IFS= read -r line; do
                [[ $line == *" listening on "* ]] && { echo "${line##* listening on }"; return 0; }
            done <"$log"
        fi
        kill -0 "$pid" 2>/dev/null || { echo "process $pid exited; see $log" >&2; return 1; }
        sleep 0.01
    done
    echo "no 'listening on' line in $log" >&2
    return 1
}

# http METHOD HOST:PORT TARGET [BODY]: one HTTP/1.0 exchange over bash's /dev/tcp; prints the response.
http() {
    local body=${4:-} fd
    exec {fd}<>"/dev/tcp/${2%:*}/${2##*:}"
    printf '%s %s HTTP/1.0\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s' \
        "$1" "$3" "$2" "${#body}" "$body" >&"$fd"
    cat <&"$fd"
    exec {fd}<&-
}

# Waits until `http GET ADDR TARGET` answers 200.
wait_200() {
    for _ in $(seq 500); do
        http GET "$1" "$2" 2>/dev/null | head -1 | grep -q ' 200 ' && return 0
        sleep 0.02
    done
    echo "GET http://$1$2 never answered 200" >&2
    return 1
}

# start_mini NAME ARGS...: starts `mini ARGS...` with MINI_THREADS=$threads in the background, its
# stderr in $work/NAME.log; adds it to pids and sets mini_pid and mini_addr (its `listening on` address).
start_mini() {
    local name=$1
    shift
    MINI_THREADS=$threads "$mini" "$@" 2>"$work/$name.log" &
    mini_pid=$!
    pids+=("$mini_pid")
    mini_addr=$(listen_addr "$work/$name.log" "$mini_pid")
}

# start_etcd NAME DATA_DIR: one etcd member with GOMAXPROCS=$threads on two free loopback ports, its
# output in $work/NAME.log; adds it to pids, sets etcd_addr (client HOST:PORT) and waits for /health.
start_etcd() {
    local name=$1 data=$2 ports
    mapfile -t ports < <("$bench" free-ports 2)
    GOMAXPROCS=$threads etcd --name bench --data-dir "$data" \
        --listen-client-urls "http://127.0.0.1:${ports[0]}" \
        --advertise-client-urls "http://127.0.0.1:${ports[0]}" \
        --listen-peer-urls "http://127.0.0.1:${ports[1]}" \
        --initial-advertise-peer-urls "http://127.0.0.1:${ports[1]}" \
        --initial-cluster "bench=http://127.0.0.1:${ports[1]}" \
        >"$work/$name.log" 2>&1 &
    pids+=($!)
    etcd_addr=127.0.0.1:${ports[0]}
    wait_200 "$etcd_addr" /health
}

# register_lookup_instances REGISTRY: the lookup load's 5 instances, 127.0.0.1:1111..5555 (nothing
# listens there; run the registry with --probe-interval $NO_PROBES), with an hour's lease. An etcd-backed
# registry answers 503 until it has read etcd, so each PUT is retried for a few seconds.
register_lookup_instances() {
    local port
    for port in 1111 2222 3333 4444 5555; do
        for _ in $(seq 250); do
            http PUT "$1" "/v1/services/add/127.0.0.1:$port?ttl=60m" 2>/dev/null | head -1 | grep -q ' 200 ' && break
            sleep 0.02
        done
    done
    http GET "$1" /v1/services/add | grep -q '^# add index=[0-9]* live=5 '
    http GET "$1" "/serviceAddr?queryParam=add" | grep -q '^127.0.0.1:[1-5]\{4\}$'
}

# --- numbers -----------------------------------------------------------------------------------------

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
div() { awk -v a="$1" -v b="$2" -v f="${3:-%.2f}" 'BEGIN {if (b == 0) print "n/a"; else printf f "\n", a / b}'; }
le() { awk -v a="$1" -v b="$2" 'BEGIN {exit !(a <= b)}'; }
le_both() { le "$1" "$3" && le "$2" "$3"; }
verdict() { if "$@"; then echo "met"; else echo "**not met**"; fi; }
wrk_rps() { awk '/^Requests\/sec:/ {printf "%.0f\n", $2}' "$1"; }
# wrk_pct FILE PCT: a percentile (50%, 99%, ...) in ms from wrk's latency distribution (units us,
# ms or s).
wrk_pct() {
    awk -v p="$2" '$1 == p {v = $2
        if (v ~ /us$/) {sub(/us$/, "", v); v /= 1000} else if (v ~ /ms$/) {sub(/ms$/, "", v)}
        else if (v ~ /s$/) {sub(/s$/, "", v); v *= 1000}
        printf "%.2f\n", v}' "$1"
}
wrk_p99() { wrk_pct "$1" 99%; }
# Requests wrk completed.
wrk_requests() { awk '/ requests in / {print $1}' "$1"; }
# Non-2xx answers plus socket errors in a wrk output.
wrk_errors() {
    awk '/Non-2xx/ {n += $NF} /Socket errors/ {gsub(/,/, ""); n += $4 + $6 + $8 + $10} END {print n + 0}' "$1"
}
kib_mb() { awk -v k="$1" 'BEGIN {printf "%.1f MB", k / 1024}'; }

# Reads `key=value` lines into the associative array R.
declare -A R
read_results() {
    local k v
    while IFS='=' read -r k v; do [ -n "$k" ] && R[$k]=$v; done <"$1"
}

rows=()
# table_row ARRAY CELL...: appends a markdown row of five cells (pipes escaped) to the array ARRAY.
table_row() {
    local -n _table=$1
    shift
    local cells=() c
    for c in "$@"; do cells+=("${c//|/\\|}"); done
    _table+=("| ${cells[0]} | ${cells[1]} | ${cells[2]} | ${cells[3]} | ${cells[4]} |")
}
# row FIGURE VALUE REFERENCE VERDICT COMMAND: one line of the results table.
row() { table_row rows "$@"; }

# --- build -------------------------------------------------------------------------------------------

install_missing
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)
ulimit -n "$NOFILE" 2>/dev/null || ulimit -n "$(ulimit -Hn)"

step "building the release binary and mini_bench"
target_dir=${CARGO_TARGET_DIR:-$PWD/target}
built=$(cargo bench --no-run --bench mini_bench --message-format=json-render-diagnostics |
    sed -n 's/.*"executable":"\([^"]*\)".*/\1/p')
mini=$(grep '/release/mini$' <<<"$built" | head -1)
bench=$(grep '/mini_bench-' <<<"$built" | head -1)
[ -x "$mini" ] && [ -x "$bench" ] || { echo "build did not produce mini and mini_bench" >&2; exit 1; }

work=$target_dir/bench
rm -rf "$work"
mkdir -p "$work"
threads=$(nproc)
started_at=$(date -u '+%Y-%m-%d %H:%M UTC')
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
began=$SECONDS

# --- 1. lookup rate ----------------------------------------------------------------------------------

if wants lookup; then
    step "lookup rate: mini vs nginx vs etcd, $ROUNDS rounds of ${WRK_SECONDS}s each"
    mapfile -t ports < <("$bench" free-ports 1)
    nginx_port=${ports[0]}

    MINI_THREADS=$threads "$mini" registry --listen 127.0.0.1:0 --probe-interval "$NO_PROBES" \
        2>"$work/lookup-registry.log" &
    registry_pid=$!
    pids+=("$registry_pid")
    registry=$(listen_addr "$work/lookup-registry.log" "$registry_pid")
    for port in 1111 2222 3333 4444 5555; do
        http PUT "$registry" "/v1/services/add/127.0.0.1:$port?ttl=60m" | head -1 | grep -q ' 200 '
    done
    http GET "$registry" "/serviceAddr?queryParam=add" | grep -q '^127.0.0.1:[1-5]\{4\}$'

    mkdir -p "$work/nginx"
    cat >"$work/nginx/nginx.conf" <<EOF
worker_processes $threads;
daemon off;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path $work/nginx/body;
    server {
        listen 127.0.0.1:$nginx_port;
        location / { default_type text/plain; return 200 "127.0.0.1:1111"; }
    }
}
EOF
    "$nginx_bin" -p "$work/nginx" -e "$work/nginx/error.log" -c "$work/nginx/nginx.conf" &
    pids+=($!)
    wait_200 "127.0.0.1:$nginx_port" /

    start_etcd etcd "$work/etcd"
    etcd=$etcd_addr
    # key "add" = YWRk, value "127.0.0.1:1111" = MTI3LjAuMC4xOjExMTE=
    http POST "$etcd" /v3/kv/put '{"key":"YWRk","value":"MTI3LjAuMC4xOjExMTE="}' | head -1 | grep -q ' 200 '
    http POST "$etcd" /v3/kv/range '{"key":"YWRk"}' | grep -q 'MTI3LjAuMC4xOjExMTE='
    cat >"$work/etcd-range.lua" <<'EOF'
-- wrk: a linearizable range read of the key "add" through etcd's JSON gateway.
wrk.method = "POST"
wrk.body = '{"key":"YWRk"}'
wrk.headers["Content-Type"] = "application/json"
EOF

    wrk_cmd=(wrk -t"$WRK_THREADS" -c"$WRK_CONNECTIONS" -d"${WRK_SECONDS}s" --latency --timeout 2s)
    declare -A url=(
        [mini]="http://$registry/serviceAddr?queryParam=add"
        [nginx]="http://127.0.0.1:$nginx_port/"
        [etcd]="http://$etcd/v3/kv/range"
    )
    declare -A extra=([mini]="" [nginx]="" [etcd]="-s $work/etcd-range.lua")
    declare -A rps p99 errs cmd
    round_rows=()
    ratios_nginx="" ratios_etcd=""
    for round in $(seq "$ROUNDS"); do
        line="| $round"
        for who in mini nginx etcd; do
            out=$work/wrk-$who-$round.txt
            # shellcheck disable=SC2206
            args=("${wrk_cmd[@]}" ${extra[$who]} "${url[$who]}")
            cmd[$who]="${args[*]}"
            "${args[@]}" >"$out"
            rps[$who]+="$(wrk_rps "$out") "
            p99[$who]+="$(wrk_p99 "$out") "
            errs[$who]=$((${errs[$who]:-0} + $(wrk_errors "$out")))
            line+=" | $(wrk_rps "$out") req/s, p99 $(wrk_p99 "$out") ms"
            echo "   round $round $who: $(wrk_rps "$out") req/s, p99 $(wrk_p99 "$out") ms" >&2
        done
        # The ratios of one round: mini against references measured seconds apart.
        r_nginx=$(div "$(wrk_rps "$work/wrk-mini-$round.txt")" "$(wrk_rps "$work/wrk-nginx-$round.txt")")
        r_etcd=$(div "$(wrk_rps "$work/wrk-mini-$round.txt")" "$(wrk_rps "$work/wrk-etcd-$round.txt")")
        ratios_nginx+="$r_nginx "
        ratios_etcd+="$r_etcd "
        round_rows+=("$line | ${r_nginx}x | ${r_etcd}x |")
    done
    for who in mini nginx etcd; do
        # shellcheck disable=SC2086
        R[rps_$who]=$(median ${rps[$who]})
        # shellcheck disable=SC2086
        R[p99_$who]=$(median ${p99[$who]})
    done
    stop "${pids[@]}"
    pids=()

    # shellcheck disable=SC2086
    vs_nginx=$(median $ratios_nginx)
    # shellcheck disable=SC2086
    vs_etcd=$(median $ratios_etcd)
    row "Lookup rate, mini: \`GET /serviceAddr?queryParam=add\`, 5 instances" \
        "${R[rps_mini]} req/s, p99 ${R[p99_mini]} ms (medians of $ROUNDS; ${errs[mini]} errors)" \
        "nginx ${R[rps_nginx]} req/s (target >= 0.7x); etcd ${R[rps_etcd]} req/s (target >= 3x)" \
        "${vs_nginx}x nginx: $(verdict le 0.7 "$vs_nginx"); ${vs_etcd}x etcd: $(verdict le 3 "$vs_etcd") (medians of the per-round ratios)" \
        "\`${cmd[mini]}\`"
    row "Lookup reference: nginx, static 14-byte body" \
        "${R[rps_nginx]} req/s, p99 ${R[p99_nginx]} ms (${errs[nginx]} errors)" "-" \
        "mini p99 is $(div "${R[p99_mini]}" "${R[p99_nginx]}")x nginx's" "\`${cmd[nginx]}\`"
    row "Lookup reference: etcd 3.4, range read of one key via the JSON gateway" \
        "${R[rps_etcd]} req/s, p99 ${R[p99_etcd]} ms (${errs[etcd]} errors)" "-" \
        "mini p99 is $(div "${R[p99_mini]}" "${R[p99_etcd]}")x etcd's" "\`${cmd[etcd]}\`"
fi

# --- 2. heartbeat ingest -----------------------------------------------------------------------------

if wants heartbeat; then
    step "heartbeat ingest: ${HEARTBEAT_STEPS##*,} instances renewed every $BEAT_PERIOD for $BEAT_SECONDS"
    MINI_THREADS=$threads "$mini" registry --listen 127.0.0.1:0 --probe-interval "$NO_PROBES" \
        2>"$work/heartbeat-registry.log" &
    registry_pid=$!
    pids+=("$registry_pid")
    registry=$(listen_addr "$work/heartbeat-registry.log" "$registry_pid")
    cmd_heartbeat="mini_bench heartbeat --registry $registry --pid $registry_pid --steps $HEARTBEAT_STEPS --period $BEAT_PERIOD --duration $BEAT_SECONDS --workers $BEAT_WORKERS"
    "$bench" heartbeat --registry "$registry" --pid "$registry_pid" --steps "$HEARTBEAT_STEPS" \
        --period "$BEAT_PERIOD" --duration "$BEAT_SECONDS" --workers "$BEAT_WORKERS" \
        >"$work/heartbeat.txt" 2> >(tee "$work/heartbeat.err" >&2)
    stop "${pids[@]}"
    pids=()
    read_results "$work/heartbeat.txt"
    cat "$work/heartbeat.txt" >&2
    n=${R[beat_instances]}
    reached=$(div "${R[beat_rate]}" "${R[beat_target_rate]}")
    sustained=$(awk -v r="$reached" -v f="${R[beat_failed]}" 'BEGIN {exit !(r >= 0.98 && f == 0)}' && echo yes || echo no)
    row "Heartbeat rate, $n instances every $BEAT_PERIOD ($BEAT_WORKERS connections)" \
        "${R[beat_rate]} beats/s (${R[beat_ok]} ok, ${R[beat_failed]} failed, over ${R[beat_seconds]} s)" \
        "offered ${R[beat_target_rate]} beats/s" "${reached}x offered; sustained: $sustained (p99 sent ${R[beat_late_p99_ms]} ms behind schedule)" "\`$cmd_heartbeat\`"
    row "Heartbeat latency p50 / p99 / max" "${R[beat_p50_ms]} / ${R[beat_p99_ms]} / ${R[beat_max_ms]} ms" \
        "target p99 < 5 ms" "$(div "${R[beat_p99_ms]}" 5)x target: $(verdict le "${R[beat_p99_ms]}" 5)" "same run"
    row "Registry CPU while ingesting" "${R[registry_cpu_pct]} % of one core (generator: ${R[generator_cpu_pct]} %)" \
        "-" "$(div "$(awk -v c="${R[registry_cpu_pct]}" 'BEGIN {print c * 1e4}')" "${R[beat_rate]}" '%.1f') us of registry CPU per beat" "same run"
    rss_last=${R[rss_kib_$n]}
    row "Registry RSS empty / 1k / 10k / 100k instances" \
        "$(kib_mb "${R[rss_kib_empty]}") / $(kib_mb "${R[rss_kib_1000]}") / $(kib_mb "${R[rss_kib_10000]}") / $(kib_mb "$rss_last") (after beats $(kib_mb "${R[rss_kib_after_beats]}"))" \
        "target < 64 MB at 100k" "$(div "$rss_last" 65536)x target: $(verdict le "$rss_last" 65536)" "same run (VmRSS of /proc/PID/status)"
    row "Bytes per instance" "$(awk -v a="$rss_last" -v b="${R[rss_kib_empty]}" -v n="$n" 'BEGIN {printf "%.0f B", (a - b) * 1024 / n}')" \
        "-" "(RSS at $n - RSS empty) / $n" "same run"
    row "Registration rate (new instances)" "${R[register_rate]} registrations/s" "-" "-" "same run"
fi

# --- 3. failure to silence ---------------------------------------------------------------------------

if wants silence; then
    step "failure to silence: 4 registries x 5 kills at the default timings, then the client under kills"
    cmd_silence="mini_bench silence --mini $mini --logs $work/silence --registries 4 --kills 5 --adders 5 --poll 10ms --client-calls 10000"
    "$bench" silence --mini "$mini" --logs "$work/silence" --registries 4 --kills 5 --adders 5 \
        --poll 10ms --client-calls 10000 >"$work/silence.txt"
    read_results "$work/silence.txt"
    cat "$work/silence.txt" >&2
    row "Failure to silence (SIGKILL to no longer handed out), probe 5 s / timeout 2 s" \
        "median ${R[silence_median_ms]} ms, max ${R[silence_max_ms]} ms, min ${R[silence_min_ms]} ms over ${R[silence_kills]} kills (poll every ${R[silence_poll_ms]} ms)" \
        "design bound: probe interval + timeout = 7000 ms" "max $(div "${R[silence_max_ms]}" 7000)x bound: $(verdict le "${R[silence_max_ms]}" 7000)" "\`$cmd_silence\`"
    row "Failed client calls while 2 of 5 adders are SIGKILLed" \
        "${R[client_failed]} of ${R[client_calls]} (kills mid-run: ${R[client_kills_mid_run]}; ${R[client_seconds]} s)" \
        "target 0" "$(verdict [ "${R[client_failed]}" = 0 ])" "same run: \`mini client 1 2 --registry ADDR --repeat 10000\`"
fi

# --- 4. footprint ------------------------------------------------------------------------------------

if wants footprint; then
    step "footprint"
    size=$(stat -c %s "$mini")
    crates=$(cargo tree -e normal --prefix none | sed 's/ (\*)$//' | sort -u | wc -l)
    cmd_footprint="mini_bench footprint --mini $mini --logs $work/footprint --starts 20"
    "$bench" footprint --mini "$mini" --logs "$work/footprint" --starts 20 >"$work/footprint.txt"
    read_results "$work/footprint.txt"
    cat "$work/footprint.txt" >&2
    row "Release binary size (stripped: profile.release strip = true)" "$size bytes ($(awk -v s="$size" 'BEGIN {printf "%.2f MB", s / 1048576}'))" \
        "target < 1.5 MB" "$(div "$size" 1572864)x target: $(verdict le "$size" 1572864)" "\`stat -c %s $mini\`"
    row "Crates in the normal dependency tree (incl. mini and proc-macros)" "$crates" "-" "-" \
        "\`cargo tree -e normal --prefix none | sed 's/ (\\*)\$//' | sort -u | wc -l\`"
    row "Cold start to first 200 on /health (spawn to answer)" \
        "median ${R[coldstart_median_ms]} ms, max ${R[coldstart_max_ms]} ms over ${R[coldstart_starts]} starts (poller: one connect attempt every ${R[coldstart_poll_us]} us)" \
        "target < 10 ms" "$(div "${R[coldstart_median_ms]}" 10)x target: $(verdict le "${R[coldstart_median_ms]}" 10)" "\`$cmd_footprint\`"
    row "Idle RSS: registry / adder (after 1 s, adder registered)" \
        "$(kib_mb "${R[rss_idle_registry_kib]}") / $(kib_mb "${R[rss_idle_adder_kib]}")" "-" "-" "same run"
fi

# --- 5. probe cost -----------------------------------------------------------------------------------

if wants probe; then
    step "probe cost: $PROBE_TARGETS instances probed every 5 s, CPU over ${PROBE_WINDOW}s"
    MINI_THREADS=$threads "$mini" registry --listen 127.0.0.1:0 2>"$work/probe-registry.log" &
    registry_pid=$!
    pids+=("$registry_pid")
    registry=$(listen_addr "$work/probe-registry.log" "$registry_pid")
    "$bench" probe-target --registry "$registry" --count "$PROBE_TARGETS" \
        >"$work/probe-target.txt" 2>"$work/probe-target.log" &
    target_pid=$!
    pids+=("$target_pid")
    for _ in $(seq 600); do
        grep -q '^ready' "$work/probe-target.txt" && break
        kill -0 "$target_pid" 2>/dev/null || { cat "$work/probe-target.log" >&2; exit 1; }
        sleep 0.1
    done
    grep -q '^ready' "$work/probe-target.txt"
    ticks() { awk '{sub(/^.*\) /, ""); print $12 + $13}' /proc/"$1"/stat; }
    hz=$(getconf CLK_TCK)
    t0=$(ticks "$registry_pid")
    s0=$(ticks "$target_pid")
    sleep "$PROBE_WINDOW"
    t1=$(ticks "$registry_pid")
    s1=$(ticks "$target_pid")
    probed_ok=$(http GET "$registry" /v1/services/probe | grep -c 'probe=ok:' || true)
    summary=$(http GET "$registry" /v1/services | grep '^probe ' || true)
    stop "${pids[@]}"
    pids=()
    cpu=$(awk -v d=$((t1 - t0)) -v hz="$hz" -v w="$PROBE_WINDOW" 'BEGIN {printf "%.1f", 100 * d / hz / w}')
    target_cpu=$(awk -v d=$((s1 - s0)) -v hz="$hz" -v w="$PROBE_WINDOW" 'BEGIN {printf "%.1f", 100 * d / hz / w}')
    per_probe=$(awk -v d=$((t1 - t0)) -v hz="$hz" -v n="$PROBE_TARGETS" -v w="$PROBE_WINDOW" 'BEGIN {printf "%.0f", 1e6 * d / hz / (n * w / 5)}')
    echo "   registry CPU $cpu %, targets' CPU $target_cpu %, $probed_ok probed ok; $summary" >&2
    row "Probe cost: registry CPU for $PROBE_TARGETS instances every 5 s" \
        "$cpu % of one core (~$per_probe us per probe; targets' process $target_cpu %)" "-" \
        "$probed_ok of $PROBE_TARGETS last probe ok; \`$summary\`" \
        "registry default timings; \`mini_bench probe-target --registry $registry --count $PROBE_TARGETS\`; utime+stime delta of /proc/PID/stat over ${PROBE_WINDOW} s"
fi

# --- 6. change to watcher ----------------------------------------------------------------------------

if wants watch; then
    step "watch: PUT to the answers of $WATCH_COUNTS waiting watchers, $WATCH_CHANGES changes each"
    start_mini watch-registry registry --listen 127.0.0.1:0 --probe-interval "$NO_PROBES"
    cmd_watch="mini_bench watch --registry $mini_addr --pid $mini_pid --watchers $WATCH_COUNTS --changes $WATCH_CHANGES"
    "$bench" watch --registry "$mini_addr" --pid "$mini_pid" --watchers "$WATCH_COUNTS" \
        --changes "$WATCH_CHANGES" >"$work/watch.txt"
    stop "${pids[@]}"
    pids=()
    read_results "$work/watch.txt"
    cat "$work/watch.txt" >&2
    for w in ${WATCH_COUNTS//,/ }; do
        if [ "$w" = 1 ]; then
            row "Change to watcher: \`PUT\` start to the answer of 1 waiting watch (\`GET /v1/services/add?index=N&wait=60s\`)" \
                "median ${R[watch_1_median_p50_ms]} ms, max ${R[watch_1_median_max_ms]} ms over ${R[watch_changes]} changes" \
                "target < $WATCH_TARGET_MS ms" \
                "max $(div "${R[watch_1_median_max_ms]}" "$WATCH_TARGET_MS" %.3f)x target: $(verdict le "${R[watch_1_median_max_ms]}" "$WATCH_TARGET_MS")" \
                "\`$cmd_watch\`"
        else
            row "Change to $w watchers (one client process, one connection each; all waiting before each change)" \
                "per-change median watcher: median ${R[watch_${w}_median_p50_ms]} ms, p99 = max ${R[watch_${w}_median_max_ms]} ms; slowest watcher: median ${R[watch_${w}_slowest_p50_ms]} ms, max ${R[watch_${w}_slowest_max_ms]} ms (${R[watch_changes]} changes)" \
                "target < $WATCH_TARGET_MS ms" \
                "median watcher $(div "${R[watch_${w}_median_p50_ms]}" "$WATCH_TARGET_MS")x target: $(verdict le "${R[watch_${w}_median_p50_ms]}" "$WATCH_TARGET_MS"); slowest watcher (median over changes) $(div "${R[watch_${w}_slowest_p50_ms]}" "$WATCH_TARGET_MS")x: $(verdict le "${R[watch_${w}_slowest_p50_ms]}" "$WATCH_TARGET_MS")" \
                "same run"
            row "Watch cost: registry threads and RSS with $w waiting watchers" \
                "${R[watch_${w}_threads]} threads (idle: ${R[watch_threads_idle]}); RSS $(kib_mb "${R[watch_${w}_rss_kib]}") (idle: $(kib_mb "${R[watch_rss_kib_idle]}"), $(awk -v a="${R[watch_${w}_rss_kib]}" -v b="${R[watch_rss_kib_idle]}" -v n="$w" 'BEGIN {printf "%.1f KB", (a - b) / n}') per watcher); all armed in ${R[watch_${w}_arm_ms]} ms, re-armed after a change in ${R[watch_${w}_rearm_p50_ms]} ms (median); registry CPU ${R[watch_${w}_registry_cpu_ms_per_change]} ms per change (watchers' process ${R[watch_${w}_watchers_cpu_ms_per_change]} ms)" \
                "target: no thread per watcher" \
                "$(verdict [ "${R[watch_${w}_threads]}" = "${R[watch_threads_idle]}" ]) (threads unchanged)" \
                "same run (\`Threads:\` and VmRSS of /proc/PID/status)"
        fi
    done
fi

# --- 7. balancing around a slow adder ----------------------------------------------------------------

if wants lb; then
    step "lb: $LB_STRATEGIES with one slow adder ($LB_DELAY), $LB_ROUNDS rounds of $LB_CALLS calls"
    cmd_lb="mini_bench lb --mini $mini --logs $work/lb --strategies $LB_STRATEGIES --rounds $LB_ROUNDS --calls $LB_CALLS --concurrency $LB_CONCURRENCY --delay $LB_DELAY"
    "$bench" lb --mini "$mini" --logs "$work/lb" --strategies "$LB_STRATEGIES" --rounds "$LB_ROUNDS" \
        --calls "$LB_CALLS" --concurrency "$LB_CONCURRENCY" --delay "$LB_DELAY" >"$work/lb.txt"
    read_results "$work/lb.txt"
    cat "$work/lb.txt" >&2
    shares="" times="" failed=0
    for s in ${LB_STRATEGIES//,/ }; do
        k=${s//-/_}
        shares+="${shares:+ / }${R[lb_${k}_slow_pct]} %"
        times+="${times:+ / }${R[lb_${k}_seconds]}"
        failed=$((failed + ${R[lb_${k}_failed]}))
    done
    share_ratio=$(div "${R[lb_p2c_slow_pct]}" "${R[lb_random_slow_pct]}")
    time_ratio=$(div "${R[lb_p2c_seconds]}" "${R[lb_random_seconds]}")
    n_adders=${R[lb_adders]}
    row "Slow adder's share of calls (1 of $n_adders adders answers after $LB_DELAY), \`--lb ${LB_STRATEGIES//,/\` / \`}\`" \
        "$shares (medians of $LB_ROUNDS rounds; $failed calls failed)" \
        "fair share $(div 100 "$n_adders" '%.1f') %; target: p2c far below random (<= ${LB_P2C_MAX_RATIO}x)" \
        "p2c ${share_ratio}x random: $(verdict le "$share_ratio" "$LB_P2C_MAX_RATIO")" \
        "\`$cmd_lb\`, each run \`mini client 1 2 --registry ADDR --repeat $LB_CALLS --concurrency $LB_CONCURRENCY --lb S\`"
    row "Wall time of $LB_CALLS calls, $LB_CONCURRENCY in flight, \`--lb ${LB_STRATEGIES//,/\` / \`}\`" \
        "$times s (medians of $LB_ROUNDS rounds, strategies alternating)" \
        "target: p2c finishes sooner than random" \
        "p2c ${time_ratio}x random: $(verdict le "${R[lb_p2c_seconds]}" "${R[lb_random_seconds]}")" "same run (process start to exit)"
fi

# --- 8. lookups through an etcd-backed registry ------------------------------------------------------

if wants etcd-lookup; then
    step "etcd-lookup: --store etcd vs memory, $ROUNDS rounds of ${WRK_SECONDS}s each"
    etcd_data=$(mktemp -d -t mini-bench-etcd-XXXXXX)
    temp_dirs+=("$etcd_data")
    start_etcd etcd-lookup-etcd "$etcd_data"
    start_mini etcd-lookup-memory registry --listen 127.0.0.1:0 --probe-interval "$NO_PROBES"
    declare -A target_of=([memory]=$mini_addr)
    start_mini etcd-lookup-store registry --listen 127.0.0.1:0 --probe-interval "$NO_PROBES" \
        --store etcd --etcd "http://$etcd_addr"
    target_of[etcd]=$mini_addr
    register_lookup_instances "${target_of[memory]}"
    register_lookup_instances "${target_of[etcd]}"
    wrk_cmd=(wrk -t"$WRK_THREADS" -c"$WRK_CONNECTIONS" -d"${WRK_SECONDS}s" --latency --timeout 2s)
    declare -A e_rps e_p99 e_errs e_cmd
    etcd_round_rows=()
    e_ratios=""
    for round in $(seq "$ROUNDS"); do
        line="| $round"
        for who in memory etcd; do
            out=$work/wrk-store-$who-$round.txt
            args=("${wrk_cmd[@]}" "http://${target_of[$who]}/serviceAddr?queryParam=add")
            e_cmd[$who]="${args[*]}"
            "${args[@]}" >"$out"
            e_rps[$who]+="$(wrk_rps "$out") "
            e_p99[$who]+="$(wrk_p99 "$out") "
            e_errs[$who]=$((${e_errs[$who]:-0} + $(wrk_errors "$out")))
            line+=" | $(wrk_rps "$out") req/s, p99 $(wrk_p99 "$out") ms"
            echo "   round $round mini --store $who: $(wrk_rps "$out") req/s, p99 $(wrk_p99 "$out") ms" >&2
        done
        r=$(div "$(wrk_rps "$work/wrk-store-etcd-$round.txt")" "$(wrk_rps "$work/wrk-store-memory-$round.txt")")
        e_ratios+="$r "
        etcd_round_rows+=("$line | ${r}x |")
    done
    # The registry must still be following etcd after the load (not answering from a frozen copy).
    health=$(http GET "${target_of[etcd]}" /health | tail -1)
    stop "${pids[@]}"
    pids=()
    for who in memory etcd; do
        # shellcheck disable=SC2086
        R[store_rps_$who]=$(median ${e_rps[$who]})
        # shellcheck disable=SC2086
        R[store_p99_$who]=$(median ${e_p99[$who]})
    done
    # shellcheck disable=SC2086
    vs_memory=$(median $e_ratios)
    row "Lookup rate through an etcd-backed registry (\`--store etcd\`, 1 etcd member): \`GET /serviceAddr?queryParam=add\`, 5 instances" \
        "${R[store_rps_etcd]} req/s, p99 ${R[store_p99_etcd]} ms (medians of $ROUNDS; ${e_errs[etcd]} errors; \`/health\` after: \`$health\`)" \
        "in-memory registry, same runs alternating: ${R[store_rps_memory]} req/s, p99 ${R[store_p99_memory]} ms (${e_errs[memory]} errors)" \
        "${vs_memory}x memory (median of the per-round ratios); p99 $(div "${R[store_p99_etcd]}" "${R[store_p99_memory]}")x" \
        "\`${e_cmd[etcd]}\` (etcd-backed); \`${e_cmd[memory]}\` (memory)"
fi

# --- 9. propagation between registries on one etcd ---------------------------------------------------

if wants etcd-propagation; then
    step "etcd-propagation: PUT on registry 1 to a watcher of registry 2, $WATCH_CHANGES changes"
    etcd_data=$(mktemp -d -t mini-bench-etcd-XXXXXX)
    temp_dirs+=("$etcd_data")
    start_etcd etcd-propagation-etcd "$etcd_data"
    start_mini etcd-propagation-r1 registry --listen 127.0.0.1:0 --probe-interval "$NO_PROBES" \
        --store etcd --etcd "http://$etcd_addr"
    r1=$mini_addr
    start_mini etcd-propagation-r2 registry --listen 127.0.0.1:0 --probe-interval "$NO_PROBES" \
        --store etcd --etcd "http://$etcd_addr"
    r2=$mini_addr r2_pid=$mini_pid
    wait_200 "$r1" /health
    wait_200 "$r2" /health
    cmd_propagation="mini_bench watch --registry $r2 --writer $r1 --pid $r2_pid --watchers 1 --changes $WATCH_CHANGES --prefix propagation"
    "$bench" watch --registry "$r2" --writer "$r1" --pid "$r2_pid" --watchers 1 \
        --changes "$WATCH_CHANGES" --prefix propagation >"$work/propagation.txt"
    stop "${pids[@]}"
    pids=()
    read_results "$work/propagation.txt"
    cat "$work/propagation.txt" >&2
    row "Propagation between registries on one etcd: \`PUT\` start on registry 1 to the answer of a watch on registry 2 listing it" \
        "median ${R[propagation_1_median_p50_ms]} ms, p99 = max ${R[propagation_1_median_max_ms]} ms over ${R[propagation_changes]} registrations" \
        "target < $PROPAGATION_TARGET_MS ms" \
        "max $(div "${R[propagation_1_median_max_ms]}" "$PROPAGATION_TARGET_MS" %.3f)x target: $(verdict le "${R[propagation_1_median_max_ms]}" "$PROPAGATION_TARGET_MS")" \
        "\`$cmd_propagation\`"
fi

# --- 10. the etcd store at 100 000 instances ---------------------------------------------------------

if wants etcd-scale; then
    step "etcd-scale: $SCALE_INSTANCES instances every $BEAT_PERIOD through two --store etcd registries, and one in memory"
    etcd_data=$(mktemp -d -t mini-bench-etcd-XXXXXX)
    temp_dirs+=("$etcd_data")
    start_etcd etcd-scale-etcd "$etcd_data"
    etcd_pid=${pids[-1]}
    start_mini etcd-scale-memory registry --listen 127.0.0.1:0 --probe-interval "$NO_PROBES"
    memory=$mini_addr memory_pid=$mini_pid
    start_mini etcd-scale-r1 registry --listen 127.0.0.1:0 --probe-interval "$NO_PROBES" \
        --store etcd --etcd "http://$etcd_addr"
    r1=$mini_addr r1_pid=$mini_pid
    start_mini etcd-scale-r2 registry --listen 127.0.0.1:0 --probe-interval "$NO_PROBES" \
        --store etcd --etcd "http://$etcd_addr"
    r2=$mini_addr r2_pid=$mini_pid
    wait_200 "$r1" /health
    wait_200 "$r2" /health
    scale_args=(--memory "$memory" --memory-pid "$memory_pid" --registries "$r1,$r2"
        --registry-pids "$r1_pid,$r2_pid" --etcd "$etcd_addr" --etcd-pid "$etcd_pid"
        --instances "$SCALE_INSTANCES" --period "$BEAT_PERIOD" --duration "$BEAT_SECONDS"
        --ttl "$SCALE_TTL" --workers "$BEAT_WORKERS" --register-workers "$SCALE_REGISTER_WORKERS")
    cmd_scale="mini_bench etcd-scale ${scale_args[*]}"
    "$bench" etcd-scale "${scale_args[@]}" >"$work/etcd-scale.txt" 2> >(tee "$work/etcd-scale.err" >&2)
    health1=$(http GET "$r1" /health | tail -1)
    health2=$(http GET "$r2" /health | tail -1)
    stop "${pids[@]}"
    pids=()
    read_results "$work/etcd-scale.txt"
    cat "$work/etcd-scale.txt" >&2
    n=${R[scale_instances]}
    p50_ratio=$(div "${R[etcd_beat_p50_ms]}" "${R[memory_beat_p50_ms]}")
    p99_ratio=$(div "${R[etcd_beat_p99_ms]}" "${R[memory_beat_p99_ms]}")
    scale_rows=()
    scale_row() { table_row scale_rows "$@"; }
    scale_row "Beat latency p50 / p99 / max, $n instances every $BEAT_PERIOD, instance i through registry i mod 2 (\`--store etcd\`, 1 etcd member, $BEAT_WORKERS connections)" \
        "${R[etcd_beat_p50_ms]} / ${R[etcd_beat_p99_ms]} / ${R[etcd_beat_max_ms]} ms (${R[etcd_beat_ok]} ok, ${R[etcd_beat_failed]} failed, ${R[etcd_beat_rate]} beats/s, p99 sent ${R[etcd_beat_late_p99_ms]} ms behind schedule)" \
        "one \`--store memory\` registry, same load, same run: ${R[memory_beat_p50_ms]} / ${R[memory_beat_p99_ms]} / ${R[memory_beat_max_ms]} ms (${R[memory_beat_failed]} failed); target within ${SCALE_BEAT_MAX_RATIO}x" \
        "p50 ${p50_ratio}x, p99 ${p99_ratio}x: $(verdict le_both "$p50_ratio" "$p99_ratio" "$SCALE_BEAT_MAX_RATIO")" \
        "\`$cmd_scale\`"
    scale_row "etcd requests in steady state (no instance added, removed or changing health), from etcd's \`/metrics\`" \
        "${R[steady_etcd_requests_per_s]} requests/s (${R[steady_etcd_requests]} over ${R[steady_window_seconds]} s: ${R[steady_etcd_by_method]})" \
        "target <= $SCALE_STEADY_MAX_RPS/s, independent of the instance count" \
        "$(div "${R[steady_etcd_requests_per_s]}" "$SCALE_STEADY_MAX_RPS")x target: $(verdict le "${R[steady_etcd_requests_per_s]}" "$SCALE_STEADY_MAX_RPS")" \
        "same run: sum of \`grpc_server_started_total\` (one per unary call or stream) before and after the beat phase"
    scale_row "New registrations through the two etcd-backed registries (batched txns), $SCALE_REGISTER_WORKERS connections" \
        "${R[etcd_register_rate]} registrations/s ($n in ${R[etcd_register_seconds]} s, ${R[etcd_register_txns]} txns: $(div "$n" "${R[etcd_register_txns]}" '%.0f') per txn; CPU meanwhile: ${R[etcd_register_cpu_pct]}, so ${R[etcd_register_cpu_us_each]} us of CPU per registration; etcd WAL fsyncs ${R[etcd_register_wal_fsyncs]}, mean ${R[etcd_register_wal_fsync_mean_ms]} ms)" \
        "target >= $SCALE_REGISTER_MIN_RATE/s; in memory, same run: ${R[memory_register_rate]}/s; etcd alone, same run, same shape (txns of 128 puts from 2 writers, 2 watchers reading every event, no mini): ${R[etcd_alone_put_rate]} puts/s, ${R[etcd_alone_cpu_us_each]} us of CPU (etcd and writer) per put" \
        "$(div "${R[etcd_register_rate]}" "$SCALE_REGISTER_MIN_RATE")x target: $(verdict le "$SCALE_REGISTER_MIN_RATE" "${R[etcd_register_rate]}")" \
        "same run"
    scale_row "Visibility of a new registration through the other registry, while those registrations run" \
        "p50 ${R[visibility_p50_ms]} ms, p99 ${R[visibility_p99_ms]} ms, max ${R[visibility_max_ms]} ms over ${R[visibility_samples]} samples (the \`PUT\`'s own answer, its txn applied: p50 ${R[visibility_put_p50_ms]}, p99 ${R[visibility_put_p99_ms]} ms); both registries listed all $n ${R[converged_after_ms]} ms after the last registration answered" \
        "target p99 <= $SCALE_VISIBILITY_MAX_MS ms" \
        "$(div "${R[visibility_p99_ms]}" "$SCALE_VISIBILITY_MAX_MS")x target: $(verdict le "${R[visibility_p99_ms]}" "$SCALE_VISIBILITY_MAX_MS")" \
        "same run: \`PUT\` through one registry every 20 ms, timed to the answer of a blocking query on the other listing it"
    scale_row "CPU during the beat phase; RSS after it" \
        "registries ${R[etcd_registry1_cpu_pct]} % and ${R[etcd_registry2_cpu_pct]} % of a core, etcd ${R[etcd_member_cpu_pct]} %; RSS registries $(kib_mb "${R[etcd_registry1_rss_kib]}") and $(kib_mb "${R[etcd_registry2_rss_kib]}") (each holds all $n), etcd $(kib_mb "${R[etcd_member_rss_kib]}")" \
        "in memory: ${R[memory_registry_cpu_pct]} % of a core, RSS $(kib_mb "${R[memory_rss_kib]}")" \
        "\`/health\` after: \`$health1\`, \`$health2\`" \
        "same run (utime+stime of /proc/PID/stat, VmRSS)"
fi

# --- 11. pick cost and memory per instance with specs -------------------------------------------------

if wants pick; then
    step "pick: cost of a pick over $PICK_INSTANCES instances, and RSS per instance with tags and meta"
    cmd_pick="mini_bench pick --mini $mini --logs $work/pick --instances $PICK_INSTANCES --picks $PICK_PICKS"
    "$bench" pick --mini "$mini" --logs "$work/pick" --instances "$PICK_INSTANCES" --picks "$PICK_PICKS" \
        >"$work/pick.txt"
    read_results "$work/pick.txt"
    cat "$work/pick.txt" >&2
    n=${R[pick_instances]}
    row "Pick cost over $n instances (weights 1..10, 10 % excluded, 5 % draining): \`Registry::pick\`, one weighted draw down a Fenwick tree" \
        "${R[pick_weighted_ns]} ns per pick wall, ${R[pick_weighted_cpu_ns]} ns CPU (mean of ${R[pick_weighted_picks]}; ${R[pick_live]} pickable)" \
        "target: O(log n), not a scan" "$(verdict le "${R[pick_weighted_ns]}" 2000) (under 2 us)" "\`$cmd_pick\` (in-process, no HTTP)"
    row "Tag-filtered pick over $n instances, \`tag=v2\` on half of them / \`tag=canary\` on 1 % / a tag nobody has / \`tag=v2&tag=canary\`" \
        "${R[pick_tag_half_ns]} / ${R[pick_tag_rare_ns]} / ${R[pick_tag_none_ns]} / ${R[pick_tag_both_ns]} ns per pick wall (CPU: ${R[pick_tag_half_cpu_ns]} / ${R[pick_tag_rare_cpu_ns]} / ${R[pick_tag_none_cpu_ns]} / ${R[pick_tag_both_cpu_ns]} ns; means of ${R[pick_tag_half_picks]} / ${R[pick_tag_rare_picks]} / ${R[pick_tag_none_picks]} / ${R[pick_tag_both_picks]})" \
        "target: O(log n), not a scan" "$(verdict le "${R[pick_tag_rare_ns]}" 2000) (rare tag under 2 us): one weighted draw down the tag's own tree; two tags draw from the rarer and check the other; a tag nobody carries is one map lookup" "same run"
    row "Registry RSS at $n instances: no fields / one spec shared by all / a spec each (2 tags, 2 meta pairs, weight) / a spec each with a tag of its own too" \
        "$(kib_mb "${R[rss_plain_kib]}") / $(kib_mb "${R[rss_shared_kib]}") / $(kib_mb "${R[rss_own_kib]}") / $(kib_mb "${R[rss_own_tag_kib]}")" \
        "heartbeat section's target < 64 MB at 100k (plain instances)" \
        "${R[bytes_per_instance_plain]} / ${R[bytes_per_instance_shared]} / ${R[bytes_per_instance_own]} / ${R[bytes_per_instance_own_tag]} B per instance; a spec of its own costs $(awk -v a="${R[bytes_per_instance_own]}" -v b="${R[bytes_per_instance_plain]}" 'BEGIN {print a - b}') B more, a tag of its own (and its index) $(awk -v a="${R[bytes_per_instance_own_tag]}" -v b="${R[bytes_per_instance_own]}" 'BEGIN {print a - b}') B more; under 64 MB: shared $(verdict le "${R[rss_shared_kib]}" 65536), each its own $(verdict le "${R[rss_own_kib]}" 65536)" \
        "same run: \`PUT /v1/services/bench/ADDR?ttl=60m&tag=v2&tag=zone-a&meta=version:1.2.3&meta=host:hN&weight=3\` (and \`&tag=hN\`) from 64 connections, VmRSS"
fi

# --- 12. DNS and the Consul door -----------------------------------------------------------------------

# dnsperf_field FILE: "QPS LOST RESPONSE_BYTES NOERROR_PCT" from one dnsperf output.
dnsperf_fields() {
    awk '/Queries per second:/ {q = $4} /Queries lost:/ {l = $3}
         /Average packet size:/ {r = $7}
         /Response codes:/ {for (i = 3; i <= NF; i++) if ($i == "NOERROR") {p = $(i + 2); gsub(/[()%]/, "", p)}}
         END {printf "%.0f %d %d %s\n", q, l, r, p}' "$1"
}

if wants dns; then
    step "dns: dnsperf against mini --dns and dnsmasq ($DNS_INSTANCES instances, A and SRV), $ROUNDS rounds of ${DNS_SECONDS}s each; /v1/health/service vs /v1/services"
    start_mini dns-registry registry --listen 127.0.0.1:0 --probe-interval "$NO_PROBES" --dns 127.0.0.1:0
    dns_registry=$mini_addr
    mini_dns_port=
    for _ in $(seq 500); do
        mini_dns_port=$(sed -n 's/.* dns on 127\.0\.0\.1:\([0-9]*\) .*/\1/p' "$work/dns-registry.log")
        [ -n "$mini_dns_port" ] && break
        sleep 0.01
    done
    [ -n "$mini_dns_port" ] || { echo "no 'dns on' line in $work/dns-registry.log" >&2; exit 1; }
    # The same records for dnsmasq: A for the service name and each SRV target, SRV by --srv-host.
    mkdir -p "$work/dnsmasq"
    : >"$work/dnsmasq/hosts"
    srv_hosts=()
    for i in $(seq "$DNS_INSTANCES"); do
        http PUT "$dns_registry" "/v1/services/add/127.0.0.$i:8000?ttl=60m&check=none" | head -1 | grep -q ' 200 '
        target=$(printf '7f0000%02x.addr.mini' "$i")
        printf '127.0.0.%d add.service.mini\n127.0.0.%d %s\n' "$i" "$i" "$target" >>"$work/dnsmasq/hosts"
        srv_hosts+=("--srv-host=_add._tcp.service.mini,$target,8000,1,1")
    done
    mapfile -t ports < <("$bench" free-ports 1)
    dnsmasq_port=${ports[0]}
    /usr/sbin/dnsmasq --keep-in-foreground --conf-file=/dev/null --port="$dnsmasq_port" \
        --listen-address=127.0.0.1 --bind-interfaces --no-resolv --no-hosts \
        --addn-hosts="$work/dnsmasq/hosts" --local=/mini/ --pid-file= --user="$(id -un)" \
        --log-facility="$work/dnsmasq/dnsmasq.log" "${srv_hosts[@]}" &
    pids+=($!)
    printf 'add.service.mini A\n' >"$work/dns-a.txt"
    printf '_add._tcp.service.mini SRV\n' >"$work/dns-srv.txt"
    declare -A dns_port=([mini]=$mini_dns_port [dnsmasq]=$dnsmasq_port)
    # Both must answer NOERROR with the same size before the load.
    for who in mini dnsmasq; do
        for _ in $(seq 100); do
            dnsperf -e -s 127.0.0.1 -p "${dns_port[$who]}" -d "$work/dns-a.txt" -n 1 >"$work/dnsperf-probe-$who.txt" 2>&1 || true
            read -r _ _ _ pct < <(dnsperf_fields "$work/dnsperf-probe-$who.txt")
            [ "$pct" = "100.00" ] && break
            sleep 0.05
        done
        [ "$pct" = "100.00" ] || { cat "$work/dnsperf-probe-$who.txt" >&2; exit 1; }
    done
    declare -A d_qps d_lost d_size d_cmd
    dns_round_rows=()
    declare -A d_ratios=([a]="" [srv]="")
    for round in $(seq "$ROUNDS"); do
        line="| $round"
        for q in a srv; do
            for who in mini dnsmasq; do
                out=$work/dnsperf-$who-$q-$round.txt
                args=(dnsperf -e -s 127.0.0.1 -p "${dns_port[$who]}" -d "$work/dns-$q.txt" -l "$DNS_SECONDS" -c "$DNS_CLIENTS")
                d_cmd[$who-$q]="${args[*]}"
                "${args[@]}" >"$out" 2>&1
                read -r qps lost size pct < <(dnsperf_fields "$out")
                [ "$pct" = "100.00" ] || { echo "dnsperf against $who: NOERROR $pct %" >&2; cat "$out" >&2; exit 1; }
                d_qps[$who-$q]+="$qps "
                d_lost[$who-$q]=$((${d_lost[$who-$q]:-0} + lost))
                d_size[$who-$q]=$size
                line+=" | $qps q/s"
                echo "   round $round $who ${q^^}: $qps queries/s, $lost lost, $size-byte answers" >&2
            done
            r=$(div "$(dnsperf_fields "$work/dnsperf-mini-$q-$round.txt" | cut -d' ' -f1)" \
                "$(dnsperf_fields "$work/dnsperf-dnsmasq-$q-$round.txt" | cut -d' ' -f1)")
            d_ratios[$q]+="$r "
            line+=" | ${r}x"
        done
        dns_round_rows+=("$line |")
    done
    # The Consul door's health listing against mini's own listing of the same 10 instances.
    wrk_door=(wrk -t1 -c"$DOOR_CONNECTIONS" -d"${DOOR_SECONDS}s" --latency --timeout 2s)
    declare -A door_url=([consul]="http://$dns_registry/v1/health/service/add" [mini]="http://$dns_registry/v1/services/add")
    declare -A w_rps w_p99 w_errs w_cmd w_bytes
    w_ratios=""
    for who in consul mini; do
        w_bytes[$who]=$(http GET "$dns_registry" "${door_url[$who]#http://"$dns_registry"}" | sed -n 's/^Content-Length: *\([0-9]*\).*/\1/Ip')
    done
    for round in $(seq "$ROUNDS"); do
        for who in consul mini; do
            out=$work/wrk-door-$who-$round.txt
            args=("${wrk_door[@]}" "${door_url[$who]}")
            w_cmd[$who]="${args[*]}"
            "${args[@]}" >"$out"
            w_rps[$who]+="$(wrk_rps "$out") "
            w_p99[$who]+="$(wrk_p99 "$out") "
            w_errs[$who]=$((${w_errs[$who]:-0} + $(wrk_errors "$out")))
            echo "   round $round $who listing: $(wrk_rps "$out") req/s, p99 $(wrk_p99 "$out") ms" >&2
        done
        w_ratios+="$(div "$(wrk_rps "$work/wrk-door-consul-$round.txt")" "$(wrk_rps "$work/wrk-door-mini-$round.txt")") "
    done
    stop "${pids[@]}"
    pids=()
    for q in a srv; do
        name=${q^^}
        query=add.service.mini records="$DNS_INSTANCES records"
        [ "$q" = srv ] && query=_add._tcp.service.mini records="$DNS_INSTANCES records + $DNS_INSTANCES additional A"
        # shellcheck disable=SC2086
        mq=$(median ${d_qps[mini-$q]})
        # shellcheck disable=SC2086
        dq=$(median ${d_qps[dnsmasq-$q]})
        # shellcheck disable=SC2086
        ratio=$(median ${d_ratios[$q]})
        row "DNS queries/s, mini \`--dns\`: $name \`$query\`, $DNS_INSTANCES instances ($records, ${d_size[mini-$q]}-byte answers)" \
            "$mq queries/s (median of $ROUNDS; ${d_lost[mini-$q]} lost)" \
            "dnsmasq 2.90, same records from a hosts file and \`--srv-host\` (${d_size[dnsmasq-$q]}-byte answers), same runs alternating: $dq queries/s (${d_lost[dnsmasq-$q]} lost); target: at least as fast" \
            "${ratio}x dnsmasq: $(verdict le 1 "$ratio") (median of the per-round ratios)" \
            "\`${d_cmd[mini-$q]}\` (query file: \`$query $name\`); dnsmasq: the same with \`-p ${dns_port[dnsmasq]}\`"
    done
    for who in consul mini; do
        # shellcheck disable=SC2086
        R[door_rps_$who]=$(median ${w_rps[$who]})
        # shellcheck disable=SC2086
        R[door_p99_$who]=$(median ${w_p99[$who]})
    done
    # shellcheck disable=SC2086
    door_ratio=$(median $w_ratios)
    row "Consul door: \`GET /v1/health/service/add\`, $DNS_INSTANCES instances (${w_bytes[consul]}-byte JSON)" \
        "${R[door_rps_consul]} req/s, p99 ${R[door_p99_consul]} ms (medians of $ROUNDS; ${w_errs[consul]} errors)" \
        "mini's listing \`GET /v1/services/add\` (${w_bytes[mini]}-byte text), same runs alternating: ${R[door_rps_mini]} req/s, p99 ${R[door_p99_mini]} ms (${w_errs[mini]} errors)" \
        "${door_ratio}x mini's listing (median of the per-round ratios)" \
        "\`${w_cmd[consul]}\`; \`${w_cmd[mini]}\`"
fi

# --- 13. lookup table: mini against nginx's two configurations at three loads --------------------------

# Syscalls counted per run (raw_syscalls:sys_enter is the total; these name the usual ones).
TABLE_SYSCALLS=(recvfrom sendto read write readv writev epoll_wait epoll_pwait epoll_pwait2 epoll_ctl
    futex accept4 timerfd_settime sched_yield)
# libc allocation entry points counted with uprobes (the same for mini and nginx).
TABLE_ALLOC_FNS=(malloc calloc realloc posix_memalign aligned_alloc memalign)

# utime+stime of a process and its descendants, in clock ticks.
tree_ticks() {
    local t=0 p v
    for p in $(tree "$1"); do
        v=$(awk '{sub(/^.*\) /, ""); print $12 + $13}' /proc/"$p"/stat 2>/dev/null || echo 0)
        t=$((t + v))
    done
    echo "$t"
}

if wants lookup-table; then
    step "lookup table: mini and nginx at ${#TABLE_LOADS[@]} loads, lookups and heartbeats, $TABLE_ROUNDS rounds of ${TABLE_SECONDS}s"
    t_work=$work/table
    mkdir -p "$t_work"
    declare -A t_pid t_addr t_label t_threads
    t_who=(mini mini1)
    # Default settings: no MINI_THREADS, no flag beyond the listen address and the idle prober.
    env -u MINI_THREADS "$mini" registry --listen 127.0.0.1:0 --probe-interval "$NO_PROBES" 2>"$t_work/mini.log" &
    t_pid[mini]=$!
    pids+=($!)
    MINI_THREADS=1 "$mini" registry --listen 127.0.0.1:0 --probe-interval "$NO_PROBES" 2>"$t_work/mini1.log" &
    t_pid[mini1]=$!
    pids+=($!)
    t_label[mini]="mini, default"
    t_label[mini1]="mini, \`MINI_THREADS=1\`"
    if [ -n "$TABLE_BASE" ]; then
        t_who+=(base)
        env -u MINI_THREADS "$TABLE_BASE" registry --listen 127.0.0.1:0 --probe-interval "$NO_PROBES" 2>"$t_work/base.log" &
        t_pid[base]=$!
        pids+=($!)
        t_label[base]="mini before (\`$(basename "$TABLE_BASE")\`), default"
    fi
    for who in "${t_who[@]}"; do
        t_addr[$who]=$(listen_addr "$t_work/$who.log" "${t_pid[$who]}")
        register_lookup_instances "${t_addr[$who]}"
    done
    mapfile -t ports < <("$bench" free-ports 2)
    i=0
    for who in nginx1 nginxauto; do
        dir=$t_work/$who
        mkdir -p "$dir"
        workers=1
        [ "$who" = nginxauto ] && workers=auto
        cat >"$dir/nginx.conf" <<NGINX
worker_processes $workers;
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path $dir/body;
    server {
        listen 127.0.0.1:${ports[$i]};
        location /serviceAddr { default_type text/plain; return 200 "127.0.0.1:1111"; }
        location /registerList { default_type text/plain; return 200 "127.0.0.1:1111 registered"; }
    }
}
NGINX
        "$nginx_bin" -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf" &
        t_pid[$who]=$!
        pids+=($!)
        t_addr[$who]=127.0.0.1:${ports[$i]}
        wait_200 "${t_addr[$who]}" "/serviceAddr?queryParam=add"
        i=$((i + 1))
    done
    t_label[nginx1]="nginx, \`worker_processes 1\`"
    t_label[nginxauto]="nginx, \`worker_processes auto\`"
    t_who+=(nginx1 nginxauto)
    sleep 0.2
    for who in "${t_who[@]}"; do
        t_threads[$who]=$(for p in $(tree "${t_pid[$who]}"); do awk '/^Threads:/ {print $2}' /proc/"$p"/status; done | awk '{n += $1} END {print n}')
    done
    cat >"$t_work/beat.lua" <<'LUA'
-- wrk: the original heartbeat, POST /registerList?ip=127.0.0.1:1111 with an empty body.
wrk.method = "POST"
wrk.body = ""
LUA
    declare -A t_path=([lookup]="/serviceAddr?queryParam=add" [beat]="/registerList?ip=127.0.0.1:1111")
    t_cmd() { # kind load who seconds
        local script=""
        [ "$1" = beat ] && script="-s $t_work/beat.lua"
        echo "wrk $2 -d${4}s --latency --timeout 2s $script http://${t_addr[$3]}${t_path[$1]}"
    }
    t_runs=$t_work/runs.txt
    : >"$t_runs"
    hz=$(getconf CLK_TCK)
    for round in $(seq "$TABLE_ROUNDS"); do
        for load in "${TABLE_LOADS[@]}"; do
            for kind in lookup beat; do
                for who in "${t_who[@]}"; do
                    out=$t_work/wrk-$kind-${load// /}-$who-$round.txt
                    c0=$(tree_ticks "${t_pid[$who]}")
                    # shellcheck disable=SC2046
                    $(t_cmd "$kind" "$load" "$who" "$TABLE_SECONDS") >"$out"
                    c1=$(tree_ticks "${t_pid[$who]}")
                    n=$(wrk_requests "$out")
                    cpu=$(awk -v d=$((c1 - c0)) -v hz="$hz" -v n="$n" 'BEGIN {printf "%.2f", 1e6 * d / hz / n}')
                    echo "$kind|$load|$who|$round|$(wrk_rps "$out")|$(wrk_pct "$out" 50%)|$(wrk_pct "$out" 99%)|$cpu|$(wrk_errors "$out")" >>"$t_runs"
                    echo "   round $round $kind ${load} $who: $(wrk_rps "$out") req/s, p50 $(wrk_pct "$out" 50%) ms, p99 $(wrk_pct "$out" 99%) ms, $cpu us CPU/req" >&2
                done
            done
        done
    done

    # Counting runs (after the timed rounds, still alternating): syscalls with perf's tracepoints, then
    # heap allocations with uprobes on libc's allocator (they slow every call, so never in a timed run).
    t_counts=$t_work/counts.txt
    : >"$t_counts"
    libc=$(ldd "$mini" | awk '/libc\.so/ {print $3}')
    probes_ok=0
    alloc_events=""
    if command -v perf >/dev/null && [ -n "$libc" ]; then
        perf probe -q -d 'mini_bench:*' >/dev/null 2>&1 || true
        for f in "${TABLE_ALLOC_FNS[@]}"; do
            perf probe -q -x "$libc" --add "mini_bench:$f=$f" >/dev/null 2>&1 && alloc_events+="${alloc_events:+,}mini_bench:$f"
        done
        [ -n "$alloc_events" ] && probes_ok=1
    fi
    sys_events=raw_syscalls:sys_enter
    for s in "${TABLE_SYSCALLS[@]}"; do
        [ -d /sys/kernel/tracing/events/syscalls/sys_enter_$s ] && sys_events+=",syscalls:sys_enter_$s"
    done
    # count_run KIND LOAD WHO EVENTS OUT: perf stat on the server's processes around one wrk run;
    # prints the requests the run made.
    count_run() {
        local p list
        list=$(tree "${t_pid[$3]}" | paste -sd,)
        perf stat -x';' -e "$4" -p "$list" -o "$5" &
        p=$!
        sleep 0.3
        # shellcheck disable=SC2046
        $(t_cmd "$1" "$2" "$3" "$TABLE_COUNT_SECONDS") >"$5.wrk"
        kill -INT "$p"
        wait "$p" || true
        wrk_requests "$5.wrk"
    }
    # Sum of the counters whose name matches a regexp, in a perf stat -x';' file.
    perf_sum() { awk -F';' -v re="$2" '$3 ~ re && $1 ~ /^[0-9]+$/ {n += $1} END {print n + 0}' "$1"; }
    for load in "${TABLE_LOADS[@]}"; do
        for kind in lookup beat; do
            for who in "${t_who[@]}"; do
                base=$t_work/count-$kind-${load// /}-$who
                n=$(count_run "$kind" "$load" "$who" "$sys_events" "$base.sys")
                total=$(perf_sum "$base.sys" '^raw_syscalls:sys_enter$')
                per=$(div "$total" "$n")
                parts=""
                for s in "${TABLE_SYSCALLS[@]}"; do
                    c=$(perf_sum "$base.sys" "^syscalls:sys_enter_$s\$")
                    [ "$c" -gt 0 ] 2>/dev/null && parts+="${parts:+, }$s $(div "$c" "$n")"
                done
                allocs=n/a
                if [ "$probes_ok" = 1 ]; then
                    na=$(count_run "$kind" "$load" "$who" "$alloc_events" "$base.alloc")
                    allocs=$(div "$(perf_sum "$base.alloc" '^mini_bench:')" "$na")
                fi
                echo "$kind|$load|$who|$per|$parts|$allocs" >>"$t_counts"
                echo "   counts $kind $load $who: $per syscalls/req ($parts); $allocs allocations/req" >&2
            done
        done
    done
    [ "$probes_ok" = 1 ] && perf probe -q -d 'mini_bench:*' >/dev/null 2>&1
    t_load_end=$(cut -d' ' -f1-3 /proc/loadavg)
    stop "${pids[@]}"
    pids=()

    # User-space instructions per request, which no load on the machine changes: each server alone
    # under callgrind (instrumentation switched on only around the counted wrk run), wrk -t1 -c4.
    declare -A t_ir
    # The dumps callgrind wrote for OUT so far (OUT.1, OUT.2, ...), one a line.
    dumps() { local f; for f in "$1".*; do [ -e "$f" ] && echo "$f"; done; return 0; }
    if command -v valgrind >/dev/null && command -v callgrind_control >/dev/null; then
        cg_dir=$t_work/callgrind
        mkdir -p "$cg_dir"
        cat >"$cg_dir/nginx.conf" <<NGINX
worker_processes 1;
master_process off;
daemon off;
pid $cg_dir/nginx.pid;
error_log $cg_dir/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path $cg_dir/body;
    server {
        listen 127.0.0.1:${ports[0]};
        location /serviceAddr { default_type text/plain; return 200 "127.0.0.1:1111"; }
        location /registerList { default_type text/plain; return 200 "127.0.0.1:1111 registered"; }
    }
}
NGINX
        for who in mini nginx1; do
            out=$cg_dir/$who.out
            if [ "$who" = mini ]; then
                env -u MINI_THREADS valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$out" \
                    "$mini" registry --listen 127.0.0.1:0 --probe-interval "$NO_PROBES" 2>"$cg_dir/mini.log" &
                cg_pid=$!
                pids+=("$cg_pid")
                cg_addr=$(listen_addr "$cg_dir/mini.log" "$cg_pid")
                register_lookup_instances "$cg_addr"
            else
                valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$out" \
                    "$nginx_bin" -p "$cg_dir" -e "$cg_dir/error.log" -c "$cg_dir/nginx.conf" 2>"$cg_dir/nginx.log" &
                cg_pid=$!
                pids+=("$cg_pid")
                cg_addr=127.0.0.1:${ports[0]}
                wait_200 "$cg_addr" "/serviceAddr?queryParam=add"
            fi
            for kind in lookup beat; do
                script=()
                [ "$kind" = beat ] && script=(-s "$t_work/beat.lua")
                wrk -t1 -c4 -d1s "${script[@]}" "http://$cg_addr${t_path[$kind]}" >/dev/null
                callgrind_control -i on "$cg_pid" >/dev/null
                n=$(wrk -t1 -c4 -d"${TABLE_SECONDS}s" "${script[@]}" "http://$cg_addr${t_path[$kind]}" | wrk_requests /dev/stdin)
                callgrind_control -i off "$cg_pid" >/dev/null
                before=$(dumps "$out" | wc -l)
                callgrind_control -d "$cg_pid" >/dev/null
                for _ in $(seq 100); do [ "$(dumps "$out" | wc -l)" -gt "$before" ] && break; sleep 0.05; done
                sleep 0.2
                dump=$out.$((before + 1))
                # Each dump holds what ran since the last one: the instrumented run only.
                ir=$(awk '/^totals:/ {print $2}' "$dump")
                t_ir[$kind-$who]=$(div "${ir:-0}" "$n" '%.0f')
                echo "   callgrind $kind $who: ${t_ir[$kind-$who]} instructions/req ($n requests)" >&2
            done
            stop "$cg_pid"
            pids=()
        done
    fi

    # field KIND LOAD WHO N: the median over rounds of field N (5 rps, 6 p50, 7 p99, 8 CPU us/req).
    t_med() {
        # shellcheck disable=SC2046
        median $(awk -F'|' -v k="$1" -v l="$2" -v w="$3" -v f="$4" '$1 == k && $2 == l && $3 == w {print $f}' "$t_runs")
    }
    # The median over rounds of WHO's field N over REF's in the same round.
    t_ratio() {
        # shellcheck disable=SC2046
        median $(awk -F'|' -v k="$1" -v l="$2" -v a="$3" -v b="$4" -v f="$5" '
            $1 == k && $2 == l && $3 == a {x[$4] = $f}
            $1 == k && $2 == l && $3 == b {y[$4] = $f}
            END {for (r in x) if (r in y && y[r] > 0) printf "%.2f\n", x[r] / y[r]}' "$t_runs")
    }
    t_count() { awk -F'|' -v k="$1" -v l="$2" -v w="$3" -v f="$4" '$1 == k && $2 == l && $3 == w {print $f}' "$t_counts"; }
    t_rows=()
    t_notes=()
    t_goal=()
    for kind in lookup beat; do
        for load in "${TABLE_LOADS[@]}"; do
            # nginx's better configuration at this load: the higher median rate.
            best=nginx1
            le "$(t_med "$kind" "$load" nginx1 5)" "$(t_med "$kind" "$load" nginxauto 5)" && best=nginxauto
            for who in "${t_who[@]}"; do
                rps=$(t_med "$kind" "$load" "$who" 5)
                errors=$(awk -F'|' -v k="$kind" -v l="$load" -v w="$who" '$1 == k && $2 == l && $3 == w {n += $9} END {print n + 0}' "$t_runs")
                vs="-"
                if [[ $who == mini* || $who == base ]]; then
                    r_rate=$(t_ratio "$kind" "$load" "$who" "$best" 5)
                    r_cpu=$(t_ratio "$kind" "$load" "$who" "$best" 8)
                    r_p99=$(t_ratio "$kind" "$load" "$who" "$best" 7)
                    vs="rate ${r_rate}x, CPU ${r_cpu}x, p99 ${r_p99}x"
                elif [ "$who" = "$best" ]; then
                    vs="(better nginx here)"
                fi
                t_rows+=("| $kind | \`$load\` | ${t_label[$who]} | $rps | $(t_med "$kind" "$load" "$who" 6) / $(t_med "$kind" "$load" "$who" 7) | $(t_med "$kind" "$load" "$who" 8) | $(t_count "$kind" "$load" "$who" 4) | $(t_count "$kind" "$load" "$who" 6) | $errors | $vs |")
                t_notes+=("$kind \`$load\` ${t_label[$who]}: $(t_count "$kind" "$load" "$who" 5)")
                if [ "$who" = mini ]; then
                    sys=$(t_count "$kind" "$load" mini 4)
                    al=$(t_count "$kind" "$load" mini 6)
                    goal="$kind \`$load\`: rate ${r_rate}x ($(verdict le 1.0 "$r_rate")), CPU ${r_cpu}x ($(verdict le "$r_cpu" 1.0))"
                    [ "$load" = "${TABLE_LOADS[0]}" ] && goal+=", p99 ${r_p99}x ($(verdict le "$r_p99" 1.5))"
                    goal+=", $sys syscalls/req ($(verdict le "$sys" 3)), $al allocations/req ($(verdict le "$al" 2))"
                    t_goal+=("$goal")
                fi
            done
        done
    done
    t_cmds="$(t_cmd lookup "${TABLE_LOADS[0]}" mini "$TABLE_SECONDS" | sed "s#${t_addr[mini]}#HOST:PORT#")"
    t_cmds_beat="$(t_cmd beat "${TABLE_LOADS[0]}" mini "$TABLE_SECONDS" | sed "s#${t_addr[mini]}#HOST:PORT#; s#$t_work/##")"
    {
        echo "<!-- lookup-table: written by \`BENCH_ONLY=lookup-table bash benches/run.sh\` (or \`just bench\`); the rest of BENCH.md is left as it is -->"
        echo "## Lookup table: mini against nginx's two configurations (issue 13)"
        echo
        echo "Taken on $(date -u '+%Y-%m-%d %H:%M UTC') at commit \`$(git rev-parse --short HEAD 2>/dev/null || echo unknown)\` on $(uname -sr), $threads cores;"
        echo "load average before: $load_start, after: $t_load_end (the bench shares the 2 cores with wrk and may share them with other work: read the ratios"
        echo "and the counts, not the absolute rates). $TABLE_ROUNDS rounds; each round runs every server in turn at every load, for"
        echo "lookups then heartbeats, ${TABLE_SECONDS} s per wrk run; rates, latencies and CPU are medians over the rounds, ratios"
        echo "medians of the per-round ratios against nginx's better configuration at that load (the one with the higher"
        echo "median rate, marked). Threads: $(for w in "${t_who[@]}"; do printf '%s %s; ' "${t_label[$w]}" "${t_threads[$w]}"; done | sed 's/; $//')."
        echo
        echo "| kind | load | server | req/s | p50 / p99 ms | CPU us/req | syscalls/req | allocations/req | errors | vs nginx's better |"
        echo "|---|---|---|---|---|---|---|---|---|---|"
        printf '%s\n' "${t_rows[@]}"
        echo
        echo "Goal (issue 13), mini with default settings:"
        echo
        printf -- '- %s\n' "${t_goal[@]}"
        echo
        echo "How each figure is taken:"
        echo
        echo "- Lookups: \`$t_cmds\`; heartbeats: \`$t_cmds_beat\` (\`beat.lua\` sets \`wrk.method = \"POST\"\`, \`wrk.body = \"\"\`)."
        echo "  Every server is started once and kept for the whole section: mini with \`registry --listen 127.0.0.1:0"
        echo "  --probe-interval $NO_PROBES\` and 5 instances (\`PUT ...?ttl=60m\`); nginx with \`return 200\` of the same bodies"
        echo "  (\`127.0.0.1:1111\`, \`127.0.0.1:1111 registered\`), \`access_log off\`, \`keepalive_requests 1000000\`."
        echo "- req/s, p50, p99: wrk's own figures (\`--latency\`). CPU per request: utime+stime of the server's processes"
        echo "  (all threads; nginx's master and workers) from /proc/PID/stat before and after the run, over wrk's request count."
        echo "- Syscalls per request: a separate ${TABLE_COUNT_SECONDS} s run per cell after the timed rounds, \`perf stat -e raw_syscalls:sys_enter\`"
        echo "  (every syscall) attached to the server's processes, over that run's requests; the split below names the usual ones."
        echo "- Allocations per request: another ${TABLE_COUNT_SECONDS} s run per cell, \`perf stat\` on uprobes at libc's"
        echo "  ${TABLE_ALLOC_FNS[*]} (\`perf probe -x $libc\`), the same for mini and nginx; uprobes slow every call, so"
        echo "  they are never on in a timed run."
        echo
        if [ -n "${t_ir[lookup-mini]:-}" ]; then
            echo "User-space instructions per request (callgrind; each server alone, \`wrk -t1 -c4\`, instrumentation on"
            echo "only around a ${TABLE_SECONDS} s run after a 1 s warm-up; every thread of the process; kernel work is not counted):"
            echo
            echo "| kind | mini, default | nginx, 1 worker (\`master_process off\`) | mini / nginx |"
            echo "|---|---|---|---|"
            for kind in lookup beat; do
                echo "| $kind | ${t_ir[$kind-mini]} | ${t_ir[$kind-nginx1]} | $(div "${t_ir[$kind-mini]}" "${t_ir[$kind-nginx1]}")x |"
            done
            echo
        fi
        echo "Syscalls per request by name:"
        echo
        printf -- '- %s\n' "${t_notes[@]}"
        echo
        echo "Tried on the way and not kept (experiment builds of d8e2163, measured once by hand on 2026-12-01 in one"
        echo "alternating run of lookups, 3 rounds x 3 s, load average 4-11; this section does not re-run them):"
        echo
        echo "- Reading speculatively after each flush (try the read, wait for epoll only on \`EAGAIN\`), what async-io"
        echo "  did; the first bench had tried reading before arming the timer and found it slower too: 1.95 \`recvfrom\`"
        echo "  and 3.05-3.13 syscalls per lookup instead of 1.00 and 2.09-2.15, CPU per lookup 3.60 / 3.00 / 3.25 us"
        echo "  against 2.78 / 2.85 / 3.12 us at -t1 -c16 / -t2 -c64 / -t2 -c256 (+29 % / +5 % / +4 %). The lanes read"
        echo "  only once epoll has reported the socket readable since the last read that drained it."
        echo "- One listener per lane with \`SO_REUSEPORT\` instead of one listener shared by the lanes with"
        echo "  \`EPOLLEXCLUSIVE\`: CPU per lookup 3.06 / 2.67 / 3.16 us against 2.78 / 2.85 / 3.12 us, rates within the"
        echo "  noise. The kernel's hash splits one wrk thread's 16 connections over both lanes, each of which then"
        echo "  waits and wakes for half the events (2.33 syscalls per lookup instead of 2.15), where the shared"
        echo "  listener gives them all to the first waiting lane. Kept the shared listener: the caller's bind needs no"
        echo "  socket option, and no other process of the same user can bind the port beside it."
        echo "- Thread count: the default is one lane per core (2 here), against \`MINI_THREADS=1\` in the table above. A"
        echo "  new connection goes to the first lane holding fewer than 32 connections, else to the one holding fewest."
        echo "  Left to the kernel's exclusive wake-ups, one wrk thread's 16 connections usually landed on one lane but"
        echo "  not always: in this section's sequence of loads, 2 of 8 runs at -t1 -c16 had them split (per-thread"
        echo "  utime+stime 75/102 and 129/52 ticks) and made 150k req/s against 185-210k with one lane; placed, 8 of 8"
        echo "  runs keep them on one lane, and 64 or 256 connections split evenly."
        echo "<!-- /lookup-table -->"
    } >"$work/lookup-table.md"
    cat "$work/lookup-table.md" >&2
fi

# --- report ------------------------------------------------------------------------------------------

load_end=$(cut -d' ' -f1-3 /proc/loadavg)
# The lookup table is its own block of BENCH.md, between `<!-- lookup-table` and `<!-- /lookup-table -->`:
# run alone it replaces only that block; with other sections the file is rewritten and the block is the
# new one, or the previous file's when the table did not run.
table_block=$work/lookup-table.md
if [ "$(echo $ONLY)" = lookup-table ]; then
    if [ -f "$OUT" ] && grep -q '^<!-- lookup-table' "$OUT"; then
        awk -v f="$table_block" '/^<!-- lookup-table/ {while ((getline l < f) > 0) print l; on = 1}
            !on {print} /^<!-- \/lookup-table -->/ {on = 0}' "$OUT" >"$OUT.tmp"
    else
        { [ -f "$OUT" ] && cat "$OUT" && echo; cat "$table_block"; } >"$OUT.tmp"
    fi
    mv "$OUT.tmp" "$OUT"
    step "wrote the lookup table into $OUT in $((SECONDS - began)) s"
    exit 0
fi
if [ ! -f "$table_block" ] && [ -f "$OUT" ]; then
    awk '/^<!-- lookup-table/ {on = 1} on {print} /^<!-- \/lookup-table -->/ {on = 0}' "$OUT" >"$work/lookup-table.old.md"
    table_block=$work/lookup-table.old.md
fi
{
    echo "# mini benchmarks"
    echo
    echo "Written by \`just bench\` (benches/run.sh, benches/mini_bench/) on $started_at at commit"
    echo "\`$(git rev-parse --short HEAD 2>/dev/null || echo unknown)\`, in $((SECONDS - began)) s after the build, on $(uname -sr), $threads cores"
    echo "($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')). Load average before: $load_start; after: $load_end."
    echo
    echo "All servers listen on 127.0.0.1 only. The machine is shared and noisy: read the ratios, each measured"
    echo "against its reference in the same run, rather than the absolute numbers. Raw outputs and logs are in"
    echo "\`${work#"$PWD"/}/\`."
    echo
    echo "Settings: mini runs with \`MINI_THREADS=$threads\`, nginx with \`worker_processes $threads\` (and"
    echo "\`keepalive_requests 1000000\`, so it keeps every connection as mini does), etcd with \`GOMAXPROCS=$threads\`."
    echo "Lookup rounds: $ROUNDS, each running mini, nginx and etcd in turn for ${WRK_SECONDS} s with \`wrk -t$WRK_THREADS -c$WRK_CONNECTIONS\`"
    echo "(keep-alive, \`--latency\`); rates and p99s are medians of the rounds, ratios medians of the per-round ratios. nginx answers \`return 200 \"127.0.0.1:1111\"\` (14 bytes);"
    echo "etcd 3.4 answers a linearizable range read of one key through its JSON gateway (\`POST /v3/kv/range\`,"
    echo "body \`{\"key\":\"YWRk\"}\`). mini's lookup registry holds 5 instances registered with \`PUT ...?ttl=60m\` and"
    echo "\`--probe-interval $NO_PROBES\`, so no probe runs during the load."
    echo
    echo "## Results"
    echo
    echo "| figure | value | reference / target | ratio / verdict | command |"
    echo "|---|---|---|---|---|"
    printf '%s\n' "${rows[@]}"
    if [ -n "${round_rows+x}" ]; then
        echo
        echo "## Lookup rounds"
        echo
        echo "| round | mini | nginx | etcd | mini / nginx | mini / etcd |"
        echo "|---|---|---|---|---|---|"
        printf '%s\n' "${round_rows[@]}"
    fi
    if [ -n "${scale_rows+x}" ]; then
        echo
        echo "## etcd store at 100 000 instances"
        echo
        echo "Two \`mini registry --store etcd\` on one etcd 3.4 member (temp data dir, \`GOMAXPROCS=$threads\`) and one"
        echo "\`--store memory\` registry, all \`--probe-interval $NO_PROBES\` and \`MINI_THREADS=$threads\`, sharing the $threads cores with"
        echo "the load generator. \`mini_bench etcd-scale\` registers $SCALE_INSTANCES fake instances (\`PUT ...?ttl=$SCALE_TTL\`) on the"
        echo "memory registry and renews each every $BEAT_PERIOD for $BEAT_SECONDS; then registers them through the two etcd-backed"
        echo "registries (instance i through registry i mod 2) while timing visibility samples, waits until both list"
        echo "all of them, and runs the same beat phase through them with etcd's request counters read around it."
        echo "Last, etcd alone: the same number of puts written straight to etcd in txns of 128 from two writers while"
        echo "two watchers of their prefix read every event (what the two registries' write lanes and watches do), for"
        echo "etcd's own ceiling under this load on this machine."
        echo
        echo "| figure | value | reference / target | ratio / verdict | command |"
        echo "|---|---|---|---|---|"
        printf '%s\n' "${scale_rows[@]}"
    fi
    if [ -n "${etcd_round_rows+x}" ]; then
        echo
        echo "## Lookup rounds through an etcd-backed registry"
        echo
        echo "| round | mini --store memory | mini --store etcd | etcd / memory |"
        echo "|---|---|---|---|"
        printf '%s\n' "${etcd_round_rows[@]}"
    fi
    if [ -n "${dns_round_rows+x}" ]; then
        echo
        echo "## DNS rounds (dnsperf, queries/s)"
        echo
        echo "| round | mini A | dnsmasq A | mini / dnsmasq A | mini SRV | dnsmasq SRV | mini / dnsmasq SRV |"
        echo "|---|---|---|---|---|---|---|"
        printf '%s\n' "${dns_round_rows[@]}"
    fi
    echo
    echo "## How each figure is taken"
    echo
    echo "- **Heartbeat ingest**: \`mini_bench heartbeat\` registers fake instances \`127.0.X.Y:PORT\` (nothing listens"
    echo "  there; the registry never probes them) with \`PUT /v1/services/bench/ADDR?ttl=5m\` from $BEAT_WORKERS tasks of"
    echo "  our own client (\`mini::http::client\`, one keep-alive connection each) on \`mini::rt\`, reading the registry's"
    echo "  VmRSS after each step; then renews every instance once per $BEAT_PERIOD with \`PUT /v1/services/bench/ADDR\`"
    echo "  (default 15 s lease), instance i of n at offset i/n of the period, for $BEAT_SECONDS. Latency is send to full"
    echo "  response, per beat; the generator shares the $threads cores with the registry. The $BEAT_WORKERS connections carry"
    echo "  all instances: real instances would each hold their own, and the registry serves at most 10 000"
    echo "  connections (\`http::MAX_CONNECTIONS\`), so this measures the state and the HTTP path, not that cap."
    echo "- **Failure to silence**: \`mini_bench silence\` runs 4 registries side by side (default timings: probe every"
    echo "  5 s, 2 s timeout, 15 s lease), each with 5 \`mini adder 0\`. Each kill waits a random fraction of the probe"
    echo "  interval, SIGKILLs a random adder, then polls \`GET /v1/services/add\` every 10 ms until the victim is no"
    echo "  longer listed \`healthy\` (so no pick can return it), and starts a fresh adder. Resolution: the poll period"
    echo "  plus one request. The client run kills 2 of 5 adders at 30 % and 60 % of its expected length (timed by a"
    echo "  1000-call calibration run) and reads its \`failed calls:\` tally."
    echo "- **Cold start**: \`mini_bench footprint\` spawns \`mini registry --listen 127.0.0.1:PORT\` and, from the same"
    echo "  thread, connects in a tight loop (refused until it listens) and sends \`GET /health\` until a 200 arrives;"
    echo "  the figure includes fork/exec. Idle RSS: a registry and an adder registered with it, 1 s after start."
    echo "- **Probe cost**: \`mini_bench probe-target\` listens on $PROBE_TARGETS ports of 127.0.0.1 in one process (our"
    echo "  server, \`GET /aliveCheck\` answers 200) and registers them; the registry (default timings) probes them all"
    echo "  every 5 s; its utime+stime over ${PROBE_WINDOW} s (three rounds) is the figure."
    echo "- **Change to watcher**: \`mini_bench watch\` holds W blocking queries (W = ${WATCH_COUNTS//,/ and }) on service \`add\`"
    echo "  of a registry (\`--probe-interval $NO_PROBES\`), each a task on \`mini::rt\` with its own \`mini::http::client\`"
    echo "  (so its own connection) and a 60 s wait. When the registry's \`mini_watchers\` gauge (\`/metrics\`, read every"
    echo "  2 ms) shows all W waiting, it notes the time and registers a new fake instance with \`PUT ...?ttl=60m\`; a"
    echo "  watcher's latency runs from that moment to its response being complete and listing the instance. Every"
    echo "  watcher re-arms on the index its answer carried and the gauge must read W again before the next of"
    echo "  $WATCH_CHANGES changes. Per change: the median and the slowest watcher; reported as the median and max"
    echo "  over the changes (with $WATCH_CHANGES changes the nearest-rank p99 is the max). The watchers share the"
    echo "  $threads cores with the registry. Threads and RSS: \`Threads:\` and VmRSS of the registry's /proc/PID/status."
    echo "- **Balancing around a slow adder**: \`mini_bench lb\` starts a registry, two \`mini adder 0 --beat 200ms\` and one"
    echo "  with \`--delay $LB_DELAY\` (waits that long before each answer), then, in each of $LB_ROUNDS rounds, runs"
    echo "  \`mini client 1 2 --repeat $LB_CALLS --concurrency $LB_CONCURRENCY --lb S\` for S = ${LB_STRATEGIES//,/, } in turn; the slow"
    echo "  adder's share is its \`ADDR served N\` line over $LB_CALLS, the time is the client process's wall time."
    echo "- **Lookups through etcd**: one etcd member (temp data dir, \`GOMAXPROCS=$threads\`) and two registries, one"
    echo "  \`--store memory\` and one \`--store etcd\`, each holding the lookup section's 5 instances; each round runs"
    echo "  the same wrk as the lookup section against the memory one, then the etcd one. Lookups read the registry's"
    echo "  local copy in both modes, so the ratio shows what following etcd costs the read path."
    echo "- **Pick cost and memory with specs**: \`mini_bench pick\` builds the registry's state (\`mini::registry::state::Registry\`)"
    echo "  in its own process with $PICK_INSTANCES instances of one service (weights 1 to 10, 10 % excluded, 5 % draining, \`v2\` on"
    echo "  every other instance, \`canary\` on every 100th) and times picks in a loop: weighted, then filtered by a common,"
    echo "  a rare and an absent tag, and by two tags; each kind for at least 1 s (or $PICK_PICKS picks), so the CPU"
    echo "  time, counted in 10 ms ticks, is read over 100 ticks or more. Then it starts four registries in turn"
    echo "  (\`--probe-interval $NO_PROBES\`) and registers $PICK_INSTANCES instances in each with \`PUT\` from 64 connections: without"
    echo "  fields, with one spec for all (\`tag=v2&tag=zone-a&meta=version:1.2.3&meta=team:payments&weight=3\`), with a spec"
    echo "  each (\`meta=host:hN\` unique per instance), and with a spec and a tag each (\`tag=hN\` too); bytes per"
    echo "  instance are (VmRSS after - VmRSS empty) / $PICK_INSTANCES."
    echo "- **Propagation through etcd**: two \`--store etcd\` registries on one etcd member (temp data dir); \`mini_bench"
    echo "  watch --watchers 1 --writer R1\` arms a watch on registry 2, waits until its gauge shows it, then"
    echo "  \`PUT\`s a new instance on registry 1 and times until registry 2's watch answers with the instance"
    echo "  listed ($WATCH_CHANGES registrations)."
    echo "- **DNS**: one registry with \`--dns 127.0.0.1:0\` holding $DNS_INSTANCES instances of \`add\`, \`127.0.0.N:8000\` for N = 1..$DNS_INSTANCES,"
    echo "  registered with \`PUT ...?ttl=60m&check=none\` (so nothing is probed), and dnsmasq 2.90 (one process,"
    echo "  \`--no-resolv --no-hosts --addn-hosts=FILE --srv-host=...\`) serving the same records: an A per address for"
    echo "  \`add.service.mini\` and for each SRV target \`7f00000N.addr.mini\`, and $DNS_INSTANCES SRV records, so both answer"
    echo "  the same $DNS_INSTANCES records (and, for SRV, the same additional A records: the answer sizes are in the table,"
    echo "  from dnsperf's \`Average packet size\`). dnsperf 2.10 with EDNS0 (\`-e\`: neither server truncates) and"
    echo "  $DNS_CLIENTS clients (\`-c\`), unthrottled, one query repeated for ${DNS_SECONDS} s; each round runs A against mini, then"
    echo "  dnsmasq, then SRV against both. dnsperf shares the $threads cores with the server under test. The Consul"
    echo "  door's \`/v1/health/service/add\` (JSON with Node, Service and Checks per instance) is measured against mini's"
    echo "  own listing of the same instances with wrk, alternating, $ROUNDS rounds of ${DOOR_SECONDS} s."
    if [ -s "$table_block" ]; then
        echo
        cat "$table_block"
    fi
} >"$OUT.tmp"
mv "$OUT.tmp" "$OUT"
step "wrote $OUT in $((SECONDS - began)) s"
