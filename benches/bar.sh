#!/usr/bin/env bash
# The performance bar of issue 3: W1-W4 against tickrelay and the baseline relay
# (benches/baseline), relay pinned to core 0, tickrelay-load on core 1, RUNS runs each
# (default 3), a fresh relay per run. Prints medians and tickrelay/baseline ratios;
# every JSON summary line is kept in target/bar/.
#
#   benches/bar.sh              # all workloads
#   RUNS=5 benches/bar.sh W1 W4 # some workloads, more runs
#   SMOKE=1 RUNS=1 benches/bar.sh  # tiny parameters: checks the script, measures nothing
#   BEFORE=/tmp/old/tickrelay benches/bar.sh W1 W2  # before/after: an older build of
#       tickrelay takes the baseline's place, runs interleaved with this one
#
# Everything is bounded: each relay runs under `timeout`, each load run has its own
# duration and a `timeout`. Needs 2+ cores, ulimit -n >= 20000 (W3), loopback
# 127.0.0.1-127.0.0.8 (the relays listen on 0.0.0.0).
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-3}
PORT=${PORT:-18700}
OUT=target/bar
WORKLOADS=("$@")
[ ${#WORKLOADS[@]} -eq 0 ] && WORKLOADS=(W1 W2 W3 W4)
KEY=bar-key
LOAD=target/release/tickrelay-load
BEFORE=${BEFORE:-}
CMP=baseline # what tickrelay is compared with
[ -n "$BEFORE" ] && CMP=before
mkdir -p "$OUT"

echo "building release binaries..." >&2
cargo build --release --quiet --bin tickrelay --bin tickrelay-load
[ -n "$BEFORE" ] || cargo build --release --quiet --manifest-path benches/baseline/Cargo.toml --target-dir target/baseline

relay_cmd() {
    case $1 in
        tickrelay) echo "target/release/tickrelay --listen 0.0.0.0:$PORT --publish-key $KEY --max-connections 60000 --max-connections-per-ip 60000" ;;
        before) echo "$BEFORE --listen 0.0.0.0:$PORT --publish-key $KEY --max-connections 60000 --max-connections-per-ip 60000" ;;
        baseline) echo "target/baseline/release/tickrelay-baseline --listen 0.0.0.0:$PORT --publish-key $KEY --max-secs 900" ;;
        floor) echo "target/baseline/release/tickrelay-floor --listen 0.0.0.0:$PORT --max-secs 900" ;;
    esac
}

# Starts a relay on core 0 (bounded by timeout); sets RELAY_PID (the relay itself, for /proc).
start_relay() {
    # shellcheck disable=SC2046
    timeout 900 taskset -c 0 $(relay_cmd "$1") >"$OUT/relay-$1.log" 2>&1 &
    local t=$!
    for _ in $(seq 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then break; fi
        sleep 0.05
    done
    RELAY_PID=$(pgrep -P "$t" | head -1)
    TIMEOUT_PID=$t
}

stop_relay() {
    kill "$TIMEOUT_PID" 2>/dev/null || true
    wait "$TIMEOUT_PID" 2>/dev/null || true
    sleep 1 # let TIME_WAIT and the port settle
}

args_for() {
    if [ -n "${SMOKE:-}" ]; then # a quick check of this script, not a measurement
        case $1 in
            W1) echo "fanout -n 100 --duration 1 --publish-key $KEY" ;;
            W2) echo "fanout -n 500 --rate 100 --duration 1 --publish-key $KEY" ;;
            W3) echo "idle -n 500 --hold 1" ;;
            W4) echo "connect -n 500 --concurrency 64" ;;
        esac
        return
    fi
    case $1 in
        W1) echo "fanout -n 1000 -k 1 --in-flight 10 --duration 10 --publish-key $KEY" ;;
        W2) echo "fanout -n 10000 -k 1 --rate 100 --duration 10 --publish-key $KEY" ;;
        W3) echo "idle -n 19000 --hold 5" ;;
        W4) echo "connect -n 10000 --concurrency 64" ;;
    esac
}

# The figure each workload is judged by (a key of the JSON line).
metric_for() {
    case $1 in
        W1) echo deliveries_per_s ;;
        # Offered 1M/s: judged by the sustained rate (median of the whole seconds while
        # publishing) with every message delivered; publish+drain is printed per run.
        W2) echo deliveries_per_s_steady ;;
        W3) echo relay_bytes_per_conn ;;
        W4) echo handshakes_per_s ;;
    esac
}

field() { grep -o "\"$2\":[-0-9.e+]*" "$1" | head -1 | cut -d: -f2; }
median() { sort -g | awk '{a[NR]=$1} END {if (NR==0) print "nan"; else if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(rustc --version), commit $(git rev-parse --short HEAD)" >&2
for w in "${WORKLOADS[@]}"; do
    for run in $(seq "$RUNS"); do
        servers=(tickrelay baseline)
        # W4 also runs against the handshake floor (accept, read, fixed 101: see
        # benches/baseline/src/bin/tickrelay-floor.rs): what client and kernel allow here.
        [ "$w" = W4 ] && servers+=(floor)
        # Before/after: the older build first, then this one, in every run.
        [ -n "$BEFORE" ] && servers=(before tickrelay)
        for who in "${servers[@]}"; do
            start_relay "$who"
            f="$OUT/$w-$who-$run.json"
            # shellcheck disable=SC2046
            timeout 300 taskset -c 1 "$LOAD" $(args_for "$w") --target "127.0.0.1:$PORT" \
                --dst-addrs 8 --relay-pid "$RELAY_PID" --quiet >"$f" 2>"$OUT/$w-$who-$run.err" || true
            stop_relay
            printf '%s %s run %s: %s=%s delivered=%s/%s publish+drain=%s lost=%s p99_us=%s client_cpu=%s relay_cpu=%s saturated=%s\n' \
                "$w" "$who" "$run" "$(metric_for "$w")" "$(field "$f" "$(metric_for "$w")")" \
                "$(field "$f" deliveries)" "$(field "$f" expected)" "$(field "$f" deliveries_per_s)" \
                "$(field "$f" lost)" "$(field "$f" p99)" "$(field "$f" client_pct)" \
                "$(field "$f" relay_pct)" "$(grep -o '"client_saturated":[a-z]*' "$f" | cut -d: -f2)" >&2
        done
    done
done

printf '\n%-4s %-22s %14s %14s %10s  %s\n' workload metric tickrelay "$CMP" ratio "bar"
for w in "${WORKLOADS[@]}"; do
    m=$(metric_for "$w")
    t=$(for r in $(seq "$RUNS"); do field "$OUT/$w-tickrelay-$r.json" "$m"; done | median)
    b=$(for r in $(seq "$RUNS"); do field "$OUT/$w-$CMP-$r.json" "$m"; done | median)
    ratio=$(awk -v t="$t" -v b="$b" 'BEGIN { if (b > 0) printf "%.2f", t / b; else print "-" }')
    case $w in
        W1) bar=">= 1200000/s, lost 0" ;;
        W2) bar="1000000/s sustained, all delivered, lost 0" ;;
        W3) bar="<= 10240 B/conn (lower is better)" ;;
        W4) bar=">= 20000/s" ;;
    esac
    printf '%-4s %-22s %14s %14s %10s  %s\n' "$w" "$m" "$t" "$b" "$ratio" "$bar"
done
if [ -z "$BEFORE" ] && [[ " ${WORKLOADS[*]} " == *" W4 "* ]]; then
    f=$(for r in $(seq "$RUNS"); do field "$OUT/W4-floor-$r.json" handshakes_per_s; done | median)
    t=$(for r in $(seq "$RUNS"); do field "$OUT/W4-tickrelay-$r.json" handshakes_per_s; done | median)
    printf '%-4s %-22s %14s %14s %10s  %s\n' W4 "floor (accept+101)" "$t" "$f" \
        "$(awk -v t="$t" -v f="$f" 'BEGIN { if (f > 0) printf "%.2f", t / f; else print "-" }')" \
        "tickrelay / floor: 1.00 means the server is not what limits W4"
fi
