#!/usr/bin/env bash
# Through Redis (issue 18): one relay alone against one relay on --redis, interleaved
# in one run, RUNS rounds (default 2). Relay on core 0, tickrelay-load on core 1,
# redis-server (Debian's, no persistence, an ephemeral port) on core 1 too (CORE_REDIS
# to move it). Three loads, 1000 subscribers on one channel, publisher over WebSocket:
#   flat   --in-flight 10, flat out: deliveries/s;
#   r1000  --rate 1000: can the publisher keep 1000 msg/s, and at what latency;
#   r200   --rate 200 (200k deliveries/s, well inside both): the added latency.
# Prints one line per run; JSON lines are kept in target/redis-bench/.
#
#   benches/redis.sh
#   RUNS=3 DURATION=10 benches/redis.sh
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-2}
DURATION=${DURATION:-5}
PORT=${PORT:-18800}
RPORT=${RPORT:-18801}
CORE_REDIS=${CORE_REDIS:-1}
OUT=target/redis-bench
KEY=bench-key
LOAD=target/release/tickrelay-load
mkdir -p "$OUT"
[ -n "${SKIP_BUILD:-}" ] || cargo build --release --quiet --bin tickrelay --bin tickrelay-load

timeout 900 taskset -c "$CORE_REDIS" redis-server --port "$RPORT" --bind 127.0.0.1 \
    --save '' --appendonly no >"$OUT/redis.log" 2>&1 &
REDIS=$!
trap 'kill $REDIS 2>/dev/null || true' EXIT
sleep 0.5

start_relay() {
    local extra=()
    [ "$1" = redis ] && extra=(--redis "redis://127.0.0.1:$RPORT" --redis-linger-ms 200)
    timeout 900 taskset -c 0 target/release/tickrelay --listen "127.0.0.1:$PORT" \
        --publish-key "$KEY" "${extra[@]}" >"$OUT/relay-$1.log" 2>&1 &
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

args_for() {
    case $1 in
        flat) echo "--in-flight 10" ;;
        r1000) echo "--rate 1000" ;;
        r200) echo "--rate 200" ;;
    esac
}

field() { grep -o "\"$2\":[-0-9.e+]*" "$1" | head -1 | cut -d: -f2; }

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(redis-server --version | cut -d' ' -f3), commit $(git rev-parse --short HEAD)" >&2
for run in $(seq "$RUNS"); do
    for load in flat r1000 r200; do
        for who in single redis; do
            start_relay "$who"
            f="$OUT/$load-$who-$run.json"
            # shellcheck disable=SC2046
            timeout 120 taskset -c 1 "$LOAD" fanout -n 1000 -k 1 $(args_for "$load") \
                --duration "$DURATION" --publish-key "$KEY" --target "127.0.0.1:$PORT" \
                --relay-pid "$RELAY_PID" --quiet >"$f" 2>"$OUT/$load-$who-$run.err" || true
            stop_relay
            printf '%s %-6s run %s: deliveries/s=%s delivered=%s/%s lost=%s reordered=%s p50_us=%s p99_us=%s relay_cpu=%s\n' \
                "$load" "$who" "$run" "$(field "$f" deliveries_per_s)" "$(field "$f" deliveries)" \
                "$(field "$f" expected)" "$(field "$f" lost)" "$(field "$f" reordered)" \
                "$(field "$f" p50)" "$(field "$f" p99)" "$(field "$f" relay_pct)"
        done
    done
done
