#!/usr/bin/env bash
# Autobahn|Testsuite (RFC 6455 conformance) against tickrelay's echo mode.
#
# Installs its runner on first use (into $AUTOBAHN_HOME, reused afterwards),
# starts the echo server on 127.0.0.1, runs the fuzzing client against it,
# keeps the HTML report under target/autobahn/report and ends with the line
#   conformance: N passed, N failed, N skipped
# Exit status is non-zero if any case failed (see summarize.py for the rule).
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: tests/autobahn/run.sh [options]
  --cases LIST       comma-separated case ids/globs
                     (default: 1.*,2.*,3.*,4.*,5.*,6.*,7.*,9.*,10.*,12.*,13.*;
                      12 and 13 are permessage-deflate; 8 and 11 do not exist)
  --server-cmd CMD   shell command starting an echo server; {port} is replaced
                     by the port (default: cargo build --release, then
                     target/release/tickrelay --echo --listen 127.0.0.1:{port}
                     --max-message-bytes 16777216)
  --runner NAME      wstest (default: Autobahn's own runner, Python 2.7) or
                     kosoku (Python 3 port of the same cases; used
                     automatically when no Python 2.7 is found)
  --path PATH        WebSocket path on the server (default: /ws, tickrelay's
                     only upgrade path)
  --port N           server port (default: a free one)
  --timeout SECS     wall-clock limit for the runner (default: 2400; groups 12
                     and 13 alone take minutes: wstest compresses in Python)
  --install-only     install the runner, then exit
Environment: AUTOBAHN_HOME   runner cache (default ~/.cache/tickrelay-autobahn)
             AUTOBAHN_PYTHON2  Python 2.7 to use (default: pyenv's 2.7.x)
EOF
}

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
AB_HOME=${AUTOBAHN_HOME:-${HOME:-/root}/.cache/tickrelay-autobahn}
OUT=$ROOT/target/autobahn

CASES='1.*,2.*,3.*,4.*,5.*,6.*,7.*,9.*,10.*,12.*,13.*'
SERVER_CMD=''
RUNNER=''
PORT=''
WS_PATH=/ws
TIMEOUT=2400
INSTALL_ONLY=0

while [[ $# -gt 0 ]]; do
    case $1 in
        --cases) CASES=$2; shift 2 ;;
        --server-cmd) SERVER_CMD=$2; shift 2 ;;
        --runner) RUNNER=$2; shift 2 ;;
        --port) PORT=$2; shift 2 ;;
        --path) WS_PATH=$2; shift 2 ;;
        --timeout) TIMEOUT=$2; shift 2 ;;
        --install-only) INSTALL_ONLY=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
done

log() { printf 'autobahn: %s\n' "$*"; }
die() { printf 'autobahn: error: %s\n' "$*" >&2; exit 1; }

# Accept the quoted spec style too ("1.*","2.*"), then insist on ids/globs.
CASES=$(tr -d '"'"' " <<<"$CASES")
[[ $CASES =~ ^[0-9.*]+(,[0-9.*]+)*$ ]] || die "bad --cases: $CASES"
[[ -z $RUNNER || $RUNNER == wstest || $RUNNER == kosoku ]] || die "bad --runner: $RUNNER"
[[ $WS_PATH =~ ^/[A-Za-z0-9._~/-]*$ ]] || die "bad --path: $WS_PATH"

# CI has no terminal: nothing may prompt.
export PIP_NO_INPUT=1 PIP_DISABLE_PIP_VERSION_CHECK=1 DEBIAN_FRONTEND=noninteractive

apt_install() {
    [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null ||
        die "need $* (apt-get as root not available)"
    log "apt-get install $*"
    apt-get update -qq && apt-get install -y -qq "$@" >/dev/null
}

find_python2() {
    local c candidates=("${AUTOBAHN_PYTHON2:-}")
    if command -v pyenv >/dev/null; then
        candidates+=("$(pyenv root)"/versions/2.7*/bin/python2.7)
    fi
    candidates+=("${PYENV_ROOT:-${HOME:-/root}/.pyenv}"/versions/2.7*/bin/python2.7)
    candidates+=("$(command -v python2.7 || true)")
    for c in "${candidates[@]}"; do
        # pyenv shims exist even when no 2.7 is installed: ask the interpreter.
        if [[ -n $c && -x $c ]] &&
            "$c" -c 'import sys; assert sys.version_info[:2] == (2, 7)' 2>/dev/null; then
            echo "$c"; return 0
        fi
    done
    return 1
}

# Run an install step quietly; show its log only when it fails.
quietly() {
    "$@" >>"$AB_HOME/install.log" 2>&1 </dev/null ||
        { tail -n 40 "$AB_HOME/install.log"; die "install step failed: $*"; }
}

# Idempotent: a stamp (pins + interpreter) is written only after a complete,
# import-checked install, so an interrupted install is redone next time.
install_wstest() {
    local env=$AB_HOME/wstest py2=$1 stamp
    stamp=$( { cat "$HERE/requirements-wstest.txt"; echo "$py2"; } | sha256sum | cut -c1-16)
    [[ -f $env/.stamp && $(<"$env/.stamp") == "$stamp" ]] && return 0
    log "installing wstest into $env (first run only, about a minute)"
    python3 -c 'import venv, ensurepip' 2>/dev/null || apt_install python3-venv
    # wsaccel, ujson and friends compile C extensions against Python 2.7.
    command -v cc >/dev/null || apt_install gcc libc6-dev
    rm -rf "$env" "$AB_HOME/virtualenv"
    # The stdlib venv can't make a 2.7 env; virtualenv 20.21.1 is the last
    # release that can (20.22 dropped 2.7), and it seeds pip 20.3.4 offline.
    quietly python3 -m venv "$AB_HOME/virtualenv"
    quietly "$AB_HOME/virtualenv/bin/pip" install 'virtualenv==20.21.1'
    VIRTUALENV_OVERRIDE_APP_DATA=$AB_HOME/virtualenv-appdata \
        quietly "$AB_HOME/virtualenv/bin/virtualenv" -p "$py2" "$env"
    quietly "$env/bin/pip" install -r "$HERE/requirements-wstest.txt"
    quietly "$env/bin/python" -c 'import autobahntestsuite.fuzzing, wsaccel'
    echo "$stamp" >"$env/.stamp"
}

install_kosoku() {
    local env=$AB_HOME/kosoku stamp=kosoku==0.1.0
    [[ -f $env/.stamp && $(<"$env/.stamp") == "$stamp" ]] && return 0
    log "installing kosoku into $env"
    python3 -c 'import venv, ensurepip' 2>/dev/null || apt_install python3-venv
    rm -rf "$env"
    quietly python3 -m venv "$env"
    quietly "$env/bin/pip" install "$stamp"
    echo "$stamp" >"$env/.stamp"
}

mkdir -p "$AB_HOME" "$OUT"
if command -v flock >/dev/null; then  # two concurrent runs share the cache
    exec 9>"$AB_HOME/.lock"
    flock 9
fi
if [[ $RUNNER != kosoku ]]; then
    if PY2=$(find_python2); then
        RUNNER=wstest
        install_wstest "$PY2"
    elif [[ $RUNNER == wstest ]]; then
        die "no Python 2.7 found (set AUTOBAHN_PYTHON2); or use --runner kosoku"
    else
        log "WARNING: no Python 2.7 found; falling back to --runner kosoku"
        RUNNER=kosoku
    fi
fi
[[ $RUNNER == kosoku ]] && install_kosoku
if command -v flock >/dev/null; then exec 9>&-; fi
[[ $INSTALL_ONLY == 1 ]] && { log "runner $RUNNER installed in $AB_HOME"; exit 0; }

# --- expected cases ---------------------------------------------------------
# Expand the globs the way the runner does, before anything can go wrong, so
# that every failure from here on (build, server start, a run that stops
# early) still ends with the summary: cases never reached count as failed.
rm -rf "$OUT/report" "$OUT/summary.json"
if [[ $RUNNER == wstest ]]; then
    "$AB_HOME/wstest/bin/python" - "$CASES" >"$OUT/expected-cases.txt" <<'EOF'
import sys
from autobahntestsuite.case import (Cases, CaseCategories, CaseSubCategories,
                                    CaseSetname, CaseBasename)
from autobahntestsuite.caseset import CaseSet
cs = CaseSet(CaseSetname, CaseBasename, Cases, CaseCategories, CaseSubCategories)
print("\n".join(cs.parseSpecCases({"cases": sys.argv[1].split(",")})))
EOF
else
    # kosoku's case index is private API, so this is best effort (kosoku
    # writes no report at all when it is stopped).
    if ! "$AB_HOME/kosoku/bin/python" - "$CASES" >"$OUT/expected-cases.txt" <<'EOF'
import fnmatch, sys
from kosoku._caseindex import initialize_shims
initialize_shims()
from kosoku.cases import CASES
globs = sys.argv[1].split(",")
print("\n".join(c for c in CASES if any(fnmatch.fnmatchcase(c, g) for g in globs)))
EOF
    then
        log "WARNING: could not list kosoku's cases"
        : >"$OUT/expected-cases.txt"
    fi
fi
[[ -s $OUT/expected-cases.txt ]] || [[ $RUNNER == kosoku ]] ||
    die "no case matches --cases $CASES"

summarize() {  # the last thing printed: the table and the conformance line
    python3 "$HERE/summarize.py" "$OUT/report" --expected "$OUT/expected-cases.txt" \
        --json "$OUT/summary.json" --note "$1"
}
# A failure before or instead of the run: say why, then summarize (every
# expected case "not run") so that CI still gets its conformance line.
fail_run() {
    printf 'autobahn: error: %s\n' "$*" >&2
    cleanup
    SERVER_PID=''
    summarize "runner=$RUNNER cases=$CASES error=$*" || true
    exit 1
}

SERVER_PID='' RUNNER_PID=''
cleanup() {
    if [[ -n $RUNNER_PID ]]; then kill -TERM "$RUNNER_PID" 2>/dev/null || true; fi
    [[ -n $SERVER_PID ]] || return 0
    # The server runs in its own process group (setsid): end all of it.
    kill -TERM -- "-$SERVER_PID" 2>/dev/null || return 0
    for _ in $(seq 50); do
        kill -0 -- "-$SERVER_PID" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -KILL -- "-$SERVER_PID" 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- server -----------------------------------------------------------------
if [[ -z $SERVER_CMD ]]; then
    log "building tickrelay (release)"
    cargo=$(command -v cargo || echo "${HOME:-/root}/.cargo/bin/cargo")
    (cd "$ROOT" && "$cargo" build --release --bin tickrelay </dev/null) ||
        fail_run "cargo build --release --bin tickrelay failed"
    # Where cargo put it: CARGO_TARGET_DIR (relative to the root) or target/.
    target_dir=${CARGO_TARGET_DIR:-target}
    [[ $target_dir == /* ]] || target_dir=$ROOT/$target_dir
    # 9.1.6/9.2.6 echo exactly 16 MiB: the limit must admit that size.
    SERVER_CMD="$(printf %q "$target_dir/release/tickrelay") --echo"
    SERVER_CMD+=" --listen 127.0.0.1:{port} --max-message-bytes 16777216"
fi
if [[ -z $PORT ]]; then
    [[ $SERVER_CMD == *'{port}'* ]] || die "--server-cmd has no {port}; pass --port"
    PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
fi

cmd=${SERVER_CMD//\{port\}/$PORT}
log "server: $cmd"
setsid bash -c "$cmd" </dev/null >"$OUT/server.log" 2>&1 &
SERVER_PID=$!
for i in $(seq 300); do
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        tail -n 20 "$OUT/server.log"
        fail_run "server exited before accepting connections (log: $OUT/server.log)"
    fi
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
    [[ $i == 300 ]] && fail_run "server not accepting on 127.0.0.1:$PORT after 30s"
    sleep 0.1
done
URL=ws://127.0.0.1:$PORT$WS_PATH
# One real upgrade first: a wrong path or a broken handshake would otherwise
# show up only as every case failing "opening handshake never completed".
probe=$(python3 "$HERE/probe.py" "$PORT" "$WS_PATH") ||
    fail_run "WebSocket upgrade probe failed: $probe (wrong --path?)"

# --- run --------------------------------------------------------------------
# In the background plus `wait`, so that an INT/TERM sent to this script is
# acted on at once (bash defers traps while a foreground child runs).
run_bounded() {
    timeout --kill-after=30 "$TIMEOUT" "$@" </dev/null >"$OUT/runner.log" 2>&1 &
    RUNNER_PID=$!
    wait "$RUNNER_PID" || rc=$?
    RUNNER_PID=''
}
log "running cases $CASES with $RUNNER against $URL"
start=$SECONDS
rc=0
if [[ $RUNNER == wstest ]]; then
    # Timeouts are wstest's defaults, spelled out: they bound each case when a
    # server hangs (no upgrade reply, no close reply, no TCP close). Loopback
    # needs far less; larger values would make a broken server take far longer.
    python3 - "$OUT" "$URL" "$CASES" <<'EOF'
import json, sys
out, url, cases = sys.argv[1:]
spec = {
    "outdir": out + "/report",
    "servers": [{"agent": "tickrelay", "url": url}],
    "cases": cases.split(","),
    "exclude-cases": [],
    "exclude-agent-cases": {},
    "options": {"openHandshakeTimeout": 5, "closeHandshakeTimeout": 1,
                "serverConnectionDropTimeout": 1},
}
with open(out + "/fuzzingclient.json", "w") as f:
    json.dump(spec, f, indent=2)
EOF
    run_bounded "$AB_HOME/wstest/bin/python" -u "$HERE/wstest_run.py" \
        "$OUT/fuzzingclient.json"
else
    args=()
    IFS=, read -ra globs <<<"$CASES"
    for g in "${globs[@]}"; do args+=(-i "$g"); done
    # kosoku exits 1 when any case fails; the summary below judges that.
    run_bounded "$AB_HOME/kosoku/bin/kosoku" -m fuzzingclient "$URL" \
        "${args[@]}" -o "$OUT/report"
    if [[ $rc == 1 ]]; then rc=0; fi
fi
elapsed=$((SECONDS - start))
if [[ $rc == 124 ]]; then
    log "runner stopped at the ${TIMEOUT}s limit; the first missing case likely hung"
elif [[ $rc != 0 ]]; then
    tail -n 20 "$OUT/runner.log"
    log "runner exited with status $rc (log: $OUT/runner.log)"
fi
kill -0 "$SERVER_PID" 2>/dev/null || log "WARNING: the server died during the run (log: $OUT/server.log)"
cleanup
SERVER_PID=''

log "runner took ${elapsed}s; log $OUT/runner.log"
log "HTML report: $OUT/report/index.html"
log "JSON summary: $OUT/summary.json"
src=0
summarize "runner=$RUNNER cases=$CASES seconds=$elapsed" || src=$?
[[ $rc == 0 && $src == 0 ]]
