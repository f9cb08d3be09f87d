#!/usr/bin/env bash
# Edge chaining (issue 19): what each hop of a chain A -> D -> F adds. Three relays on
# core 0 (A the core with --relay-key, D an edge of A, F an edge of D), tickrelay-load on
# core 1. 1000 subscribers on one channel at a moderate rate (RATE msg/s, default 200:
# 200k deliveries/s), publisher on A always; subscribers on A, then on D, then on F, in
# RUNS interleaved rounds (default 2). Latency is publish-to-delivery at the subscriber,
# so D's figure includes A's work and one hop, F's two hops.
#
#   benches/edge.sh
#   RUNS=3 RATE=500 benches/edge.sh
#   N=100 RATE=1000 benches/edge.sh   # fewer subscribers: the hop, not the fan-out
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-2}
RATE=${RATE:-200}
N=${N:-1000}
DURATION=${DURATION:-5}
OUT=target/edge-bench
KEY=bench-key
RKEY=bench-relay-key
LOAD=target/release/tickrelay-load
PA=18900 PD=18901 PF=18902
mkdir -p "$OUT"
[ -n "${SKIP_BUILD:-}" ] || cargo build --release --quiet --bin tickrelay --bin tickrelay-load

pids=()
relay() { # name port [flags...]
    local name=$1 port=$2
    shift 2
    timeout 900 taskset -c 0 target/release/tickrelay --listen "127.0.0.1:$port" \
        --publish-key "$KEY" --relay-key "$RKEY" --node-id "$name" "$@" >"$OUT/$name.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 100); do
        if curl -sf "http://127.0.0.1:$port/health" | grep -q '"status":"ok"'; then return; fi
        sleep 0.05
    done
}
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
relay a $PA
relay d $PD --upstream "ws://127.0.0.1:$PA/ws" --upstream-token "$RKEY"
relay f $PF --upstream "ws://127.0.0.1:$PD/ws" --upstream-token "$RKEY"

field() { grep -o "\"$2\":[-0-9.e+]*" "$1" | head -1 | cut -d: -f2; }

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), commit $(git rev-parse --short HEAD), rate $RATE msg/s x $N subscribers" >&2
for run in $(seq "$RUNS"); do
    for at in a:$PA d:$PD f:$PF; do
        name=${at%%:*} port=${at##*:}
        f="$OUT/$name-$run.json"
        timeout 120 taskset -c 1 "$LOAD" fanout -n "$N" -k 1 --rate "$RATE" \
            --duration "$DURATION" --publish-key "$KEY" --target "127.0.0.1:$port" \
            --publish-target "127.0.0.1:$PA" --channel-prefix "edge$run$name" \
            --quiet >"$f" 2>"$OUT/$name-$run.err" || true
        printf 'subscribers on %s run %s: deliveries/s=%s delivered=%s/%s lost=%s reordered=%s p50_us=%s p99_us=%s\n' \
            "$name" "$run" "$(field "$f" deliveries_per_s)" "$(field "$f" deliveries)" \
            "$(field "$f" expected)" "$(field "$f" lost)" "$(field "$f" reordered)" \
            "$(field "$f" p50)" "$(field "$f" p99)"
    done
done
