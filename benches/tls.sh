#!/usr/bin/env bash
# TLS termination (issue 20): W1b is W1 (1 channel x 1000 subscribers, WebSocket publisher
# flat out, 10 in flight) over TLS, against the same over plain TCP, in interleaved rounds
# with a fresh relay each; plus a paced round (RATE msg/s, default 200: 200k deliveries/s)
# that both sustain, where relay CPU per delivery is compared at equal work. Relay on core
# 0, tickrelay-load on core 1; TLS with the test certificate (tests/keys/tls_a.pem, P-256).
#
#   benches/tls.sh
#   SKIP_BUILD=1 RUNS=5 benches/tls.sh
#
# Prints, per run, deliveries/s, relay and client CPU, and relay CPU-µs per delivery
# (relay CPU-seconds over the window / deliveries in it). JSON lines in target/tls-bench/.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-3}
RATE=${RATE:-200}
DURATION=${DURATION:-10}
PORT=${PORT:-18710}
OUT=target/tls-bench
KEY=bench-key
LOAD=target/release/tickrelay-load
mkdir -p "$OUT"
[ -n "${SKIP_BUILD:-}" ] || cargo build --release --quiet --bin tickrelay --bin tickrelay-load

TLS_FLAGS="--tls-cert tests/keys/tls_a.pem --tls-key tests/keys/tls_a_key.pem"
start_relay() { # plain|tls
    local extra=""
    [ "$1" = tls ] && extra=$TLS_FLAGS
    # shellcheck disable=SC2086
    timeout 900 taskset -c 0 target/release/tickrelay --listen "0.0.0.0:$PORT" --publish-key "$KEY" \
        --max-connections-per-ip 0 $extra >"$OUT/relay-$1.log" 2>&1 &
    TIMEOUT_PID=$!
    for _ in $(seq 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then break; fi
        sleep 0.05
    done
    RELAY_PID=$(pgrep -P "$TIMEOUT_PID" | head -1)
}
stop_relay() {
    kill "$TIMEOUT_PID" 2>/dev/null || true
    wait "$TIMEOUT_PID" 2>/dev/null || true
    sleep 1
}
field() { grep -o "\"$2\":[-0-9.e+]*" "$1" | head -1 | cut -d: -f2; }

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), commit $(git rev-parse --short HEAD)" >&2
for run in $(seq "$RUNS"); do
    for load in flat paced; do
        for who in plain tls; do
            args=(fanout -n 1000 -k 1 --in-flight 10 --duration "$DURATION" --publish-key "$KEY")
            [ "$load" = paced ] && args+=(--rate "$RATE")
            [ "$who" = tls ] && args+=(--tls-ca tests/keys/tls_ca.pem)
            start_relay "$who"
            f="$OUT/$load-$who-$run.json"
            timeout 300 taskset -c 1 "$LOAD" "${args[@]}" --target "127.0.0.1:$PORT" --dst-addrs 8 \
                --relay-pid "$RELAY_PID" --quiet >"$f" 2>"$OUT/$load-$who-$run.err" || true
            stop_relay
            d=$(field "$f" deliveries_per_s)
            rc=$(field "$f" relay_pct)
            us=$(awk -v c="$rc" -v d="$d" 'BEGIN { if (d > 0) printf "%.3f", c / 100 / d * 1e6; else print "nan" }')
            printf '%s %s run %s: deliveries/s=%s delivered=%s/%s lost=%s p50_us=%s p99_us=%s relay_cpu=%s%% client_cpu=%s%% saturated=%s relay_us_per_delivery=%s\n' \
                "$load" "$who" "$run" "$d" "$(field "$f" deliveries)" "$(field "$f" expected)" \
                "$(field "$f" lost)" "$(field "$f" p50)" "$(field "$f" p99)" "$rc" \
                "$(field "$f" client_pct)" "$(grep -o '"client_saturated":[a-z]*' "$f" | cut -d: -f2)" "$us"
        done
    done
done
