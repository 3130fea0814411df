#!/usr/bin/env bash
# Client-side WebSocket echo benchmark: talon's client
# (build-bench/bench/wsclient_load, on tl_ws_connect) against Node's `ws`
# client and Bun's WebSocket client (both bench/wsclient.mjs), each
# against two echo servers: talon's
# examples/echo and a Python `websockets` server (bench/py_echo.py).
#
# Every client keeps CONNECTIONS sockets with one SIZE-byte text message
# in flight each, checks every echo, and prints messages/s and the p50/p99
# round trip over DURATION seconds after WARMUP seconds. The server runs
# pinned to SERVER_CPU, the client to CLIENT_CPU. ROUNDS rounds; the
# script prints each run and the median per (server, client).
#
# Environment (defaults in brackets):
#   DURATION [5]  WARMUP [1]  ROUNDS [3]  CONNECTIONS [16]  SIZE [32]
#   SERVERS ["talon python"]  CLIENTS ["talon node bun"]
#   TALON_PORT [18191]  PY_PORT [18192]  SERVER_CPU [0]  CLIENT_CPU [1]
#   SKIP_BUILD [0]  BUN (a bun binary; else bench/node_modules, installed
#   by npm when missing)
# Node's client needs tests/interop's npm packages (.ci/install-node-deps).
# Run it on a quiet machine (uptime's load under 1.5; each round's line
# ends with the 1-minute load average after it): the numbers are only
# worth comparing with each other, on the same machine.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)

DURATION=${DURATION:-5}
WARMUP=${WARMUP:-1}
ROUNDS=${ROUNDS:-3}
CONNECTIONS=${CONNECTIONS:-16}
SIZE=${SIZE:-32}
SERVERS=${SERVERS:-talon python}
CLIENTS=${CLIENTS:-talon node bun}
TALON_PORT=${TALON_PORT:-18191}
PY_PORT=${PY_PORT:-18192}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
SKIP_BUILD=${SKIP_BUILD:-0}
HOST=127.0.0.1 # used by lib.sh

BUILD_DIR="$ROOT/build-bench"
TALON_BIN="$BUILD_DIR/examples/echo"
LOAD_BIN="$BUILD_DIR/bench/wsclient_load"
RESULTS_DIR="$BENCH_DIR/.results"
LOG_DIR="$RESULTS_DIR/wsclient-$(date +%Y%m%d-%H%M%S)"

# log, die, cleanup, ensure_bun, build_talon, start_server, median
source "$BENCH_DIR/lib.sh"

for v in DURATION WARMUP ROUNDS CONNECTIONS SIZE TALON_PORT PY_PORT; do
  [[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a non-negative integer (got '${!v}')"
done
for s in $SERVERS; do [[ $s == talon || $s == python ]] || die "unknown server '$s'"; done
for c in $CLIENTS; do
  [[ $c == talon || $c == node || $c == bun ]] || die "unknown client '$c'"
done
mkdir -p "$LOG_DIR"
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
check_cpus

build_talon
[[ -x $LOAD_BIN ]] || die "$LOAD_BIN not built"
[[ " $CLIENTS " == *" bun "* ]] && ensure_bun
if [[ " $CLIENTS " == *" node "* ]]; then
  [[ -d $ROOT/tests/interop/node_modules/ws ]] \
    || die "Node's ws is missing: run bash .ci/install-node-deps"
fi

# start_server calls this once a server listens: one short talon run.
verify_server() {
  taskset -c "$CLIENT_CPU" "$LOAD_BIN" "ws://$HOST:$2/ws" 2 100 1 0 \
    >"$LOG_DIR/verify-$1.txt" 2>&1 \
    || { cat "$LOG_DIR/verify-$1.txt" >&2; die "$1 fails the echo check"; }
}

port_of() { if [[ $1 == talon ]]; then echo "$TALON_PORT"; else echo "$PY_PORT"; fi; }

run_client() { # client url -> the client's result line
  local c=$1 url=$2
  local -a args=("$url" "$CONNECTIONS" "$SIZE" "$DURATION" "$WARMUP")
  case $c in
    talon) taskset -c "$CLIENT_CPU" "$LOAD_BIN" "${args[@]}" ;;
    node) taskset -c "$CLIENT_CPU" node "$BENCH_DIR/wsclient.mjs" "${args[@]}" ;;
    bun) taskset -c "$CLIENT_CPU" "$BUN" "$BENCH_DIR/wsclient.mjs" "${args[@]}" ;;
  esac
}

declare -A RATE=() P99=()
for s in $SERVERS; do
  port=$(port_of "$s")
  if [[ $s == talon ]]; then
    start_server talon "$port" "$TALON_BIN" "$port"
  else
    start_server python "$port" /usr/bin/python3 "$BENCH_DIR/py_echo.py" "$port"
  fi
  for ((r = 1; r <= ROUNDS; r++)); do
    for c in $CLIENTS; do
      line=$(run_client "$c" "ws://$HOST:$port/ws" 2>>"$LOG_DIR/$c.err") \
        || die "$c client against $s failed: $line (see $LOG_DIR/$c.err)"
      [[ $line == *"errors=0"* ]] || die "$c client against $s: $line"
      log "round $r server=$s client=$c: $line (load $(cut -d' ' -f1 /proc/loadavg))"
      rate=$(sed -n 's/.*msgs\/s=\([0-9]*\).*/\1/p' <<<"$line")
      p99=$(sed -n 's/.*p99_us=\([0-9]*\).*/\1/p' <<<"$line")
      RATE[$s.$c]+="$rate "
      P99[$s.$c]+="$p99 "
    done
  done
  kill "${PID[$s]}" 2>/dev/null || true
  wait "${PID[$s]}" 2>/dev/null || true
  unset "PID[$s]"
done

printf '\n%-8s %-7s %12s %10s   (median of %d rounds; %d connections, %d-byte text, 1 in flight)\n' \
  server client 'msgs/s' 'p99 us' "$ROUNDS" "$CONNECTIONS" "$SIZE"
for s in $SERVERS; do
  for c in $CLIENTS; do
    # shellcheck disable=SC2086
    printf '%-8s %-7s %12s %10s\n' "$s" "$c" "$(median ${RATE[$s.$c]})" \
      "$(median ${P99[$s.$c]})"
  done
done
