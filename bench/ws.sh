#!/usr/bin/env bash
# WebSocket echo benchmark: talon's examples/echo against a Bun.serve
# WebSocket echo (bench/bun/echo.js), driven by bench/ws_load.c.
#
# Each server is pinned to one core (SERVER_CPU, default 0) and ws_load to
# the other (CLIENT_CPU, default 1). Scenarios (SCENARIOS):
#   pingpong  CONNECTIONS connections, 1 message in flight each, SIZE-byte
#             text messages (round trips)
#   batch     the same with INFLIGHT messages in flight per connection
#   large     LARGE_CONNECTIONS connections, 1 in flight, LARGE_SIZE-byte
#             binary messages
# Each scenario: ROUNDS rounds alternating talon and bun; each round is one
# ws_load run (fresh connections, WARMUP seconds not counted, then DURATION
# seconds measured). ws_load checks every echo (opcode, length, bytes) and
# fails on any protocol error or lost echo. Prints messages/s and p99
# round-trip latency per round, the medians, and the talon/bun ratios.
# Traffic goes to 127.0.0.1 only.
#
# Environment (defaults in brackets):
#   DURATION [10]  seconds per round        WARMUP [1]   warm-up seconds per run
#   ROUNDS [3]                              SCENARIOS ["pingpong batch large"]
#   CONNECTIONS [64]  SIZE [32]  INFLIGHT [16]   (pingpong and batch)
#   LARGE_CONNECTIONS [4]  LARGE_SIZE [65536]    (large)
#   SERVERS ["talon bun"]
#   TALON_PORT [18091]  BUN_PORT [18092]    SERVER_CPU [0]   CLIENT_CPU [1]
#                  SERVER_CPU / CLIENT_CPU: CPU lists for taskset -c (0, 0,1, 0-3)
#   WORKERS [1]    talon worker threads (0: one per CPU), all on SERVER_CPU
#   SKIP_BUILD [0]  1: use the existing build-bench/examples/echo as it is
#                  (ws_load is always rebuilt: one gcc line)
#   TALON_BIN      talon server binary [build-bench/examples/echo]; it gets the
#                  port as its first argument and in PORT, and must echo on /ws
#   BUN            path to a bun binary to use instead of bench/node_modules
#
# Exit status: 0 on success, non-zero if a build, an install, a server start,
# the echo check or a ws_load run fails (a wrong, missing or extra echo, a
# protocol error, a refused or dropped connection). Both servers are killed
# on exit, error or interrupt.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)

DURATION=${DURATION:-10}
WARMUP=${WARMUP:-1}
ROUNDS=${ROUNDS:-3}
SCENARIOS=${SCENARIOS:-pingpong batch large}
CONNECTIONS=${CONNECTIONS:-64}
SIZE=${SIZE:-32}
INFLIGHT=${INFLIGHT:-16}
LARGE_CONNECTIONS=${LARGE_CONNECTIONS:-4}
LARGE_SIZE=${LARGE_SIZE:-65536}
SERVERS=${SERVERS:-talon bun}
TALON_PORT=${TALON_PORT:-18091}
BUN_PORT=${BUN_PORT:-18092}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
SKIP_BUILD=${SKIP_BUILD:-0}
HOST=127.0.0.1 # used by lib.sh

BUILD_DIR="$ROOT/build-bench"
TALON_BIN=${TALON_BIN:-"$BUILD_DIR/examples/echo"}
WS_LOAD="$BUILD_DIR/ws_load"
RESULTS_DIR="$BENCH_DIR/.results"
STAMP=$(date +%Y%m%d-%H%M%S)
LOG_DIR="$RESULTS_DIR/ws-$STAMP"

# log, die, cleanup, ensure_bun, build_talon, port_open, start_server, median
source "$BENCH_DIR/lib.sh"

for v in DURATION WARMUP ROUNDS CONNECTIONS SIZE INFLIGHT LARGE_CONNECTIONS LARGE_SIZE \
         TALON_PORT BUN_PORT SERVER_CPU CLIENT_CPU; do
  [[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a non-negative integer (got '${!v}')"
done
(( DURATION > 0 && ROUNDS > 0 && CONNECTIONS > 0 && INFLIGHT > 0 && LARGE_CONNECTIONS > 0 )) \
  || die "DURATION, ROUNDS, CONNECTIONS, INFLIGHT and LARGE_CONNECTIONS must be positive"
for s in $SERVERS; do [[ $s == talon || $s == bun ]] || die "unknown server '$s' in SERVERS"; done
for m in $SCENARIOS; do
  [[ $m == pingpong || $m == batch || $m == large ]] || die "unknown scenario '$m' in SCENARIOS"
done

mkdir -p "$LOG_DIR"

trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- tools -----------------------------------------------------------------
build_ws_load() {
  log "building ws_load: gcc -O2 -o build-bench/ws_load bench/ws_load.c bench/wsclient.c -luv"
  mkdir -p "$BUILD_DIR"
  gcc -O2 -Wall -o "$WS_LOAD" "$BENCH_DIR/ws_load.c" "$BENCH_DIR/wsclient.c" -luv >"$LOG_DIR/ws_load-build.log" 2>&1 \
    || { cat "$LOG_DIR/ws_load-build.log" >&2
         die "building ws_load failed (it needs gcc and libuv1-dev: .ci/install-deps installs them)"; }
}

# ---- servers ---------------------------------------------------------------
# A short ws_load run of each kind before measuring: text and binary, several
# in flight, a message bigger than 64 KiB (64-bit length). ws_load checks
# every echo and exits non-zero on anything wrong.
verify_server() {
  local name=$1 port=$2
  local out="$LOG_DIR/verify-$name.txt"
  : >"$out"
  local -a a
  for args in "-c 4 -k 8 -s 100" "-c 2 -k 4 -s 70000 -b" "-c 2 -k 2 -s 0"; do
    read -ra a <<<"$args"
    taskset -c "$CLIENT_CPU" "$WS_LOAD" "${a[@]}" -w 0 -d 0.3 "$port" >>"$out" 2>&1 \
      || { cat "$out" >&2; die "$name fails the echo check (ws_load $args -w 0 -d 0.3 $port)"; }
  done
}

port_of() { if [[ $1 == talon ]]; then echo "$TALON_PORT"; else echo "$BUN_PORT"; fi; }

# ws_load arguments of a scenario
scenario_args() {
  case $1 in
    pingpong) echo "-c $CONNECTIONS -k 1 -s $SIZE" ;;
    batch)    echo "-c $CONNECTIONS -k $INFLIGHT -s $SIZE" ;;
    large)    echo "-c $LARGE_CONNECTIONS -k 1 -s $LARGE_SIZE -b" ;;
  esac
}

scenario_label() {
  local kib
  case $1 in
    pingpong) echo "c${CONNECTIONS}-k1-${SIZE}B" ;;
    batch)    echo "c${CONNECTIONS}-k${INFLIGHT}-${SIZE}B" ;;
    large)
      if (( LARGE_SIZE % 1024 == 0 )); then kib="$((LARGE_SIZE / 1024))KiB"; else kib="${LARGE_SIZE}B"; fi
      echo "c${LARGE_CONNECTIONS}-k1-${kib}-bin" ;;
  esac
}

# run_load NAME SCENARIO TAG -> prints "msgs_per_s p50_us p99_us"
run_load() {
  local name=$1 sc=$2 tag=$3 port out line
  local -a a
  port=$(port_of "$name")
  read -ra a <<<"$(scenario_args "$sc")"
  out="$LOG_DIR/ws_load-$sc-$name-$tag.txt"
  taskset -c "$CLIENT_CPU" "$WS_LOAD" "${a[@]}" -w "$WARMUP" -d "$DURATION" "$port" >"$out" 2>&1 \
    || { cat "$out" >&2; die "ws_load failed against $name ($sc, $tag)"; }
  kill -0 "${PID[$name]}" 2>/dev/null || die "$name died during the $sc run (log: $LOG_DIR/$name.log)"
  line=$(grep '^RESULT ' "$out" || true)
  [[ -n $line ]] || { cat "$out" >&2; die "no RESULT line in ws_load output ($name, $sc)"; }
  grep -q 'warning' "$out" && log "$name $sc $tag: $(grep warning "$out" | tr '\n' ' ')"
  awk '{for (i = 2; i <= NF; i++) {split($i, kv, "="); v[kv[1]] = kv[2]}
        print v["msgs_per_s"], v["p50_us"], v["p99_us"]}' <<<"$line"
}

# ---- main ------------------------------------------------------------------
command -v taskset >/dev/null 2>&1 || die "taskset (util-linux) is required"
command -v gcc >/dev/null 2>&1 || die "gcc is required to build bench/ws_load.c"
check_cpus

have() { [[ " $SERVERS " == *" $1 "* ]]; }
build_ws_load
if have talon; then build_talon; fi
if have bun; then ensure_bun; fi

if have talon; then start_server talon "$TALON_PORT" "$TALON_BIN" "$TALON_PORT"; fi
if have bun; then
  log "bun: $BUN ($("$BUN" --version))"
  start_server bun "$BUN_PORT" "$BUN" "$BENCH_DIR/bun/echo.js" "$BUN_PORT"
fi

declare -A MPS=() P50=() P99=()
for sc in $SCENARIOS; do
  for r in $(seq 1 "$ROUNDS"); do
    for s in $SERVERS; do
      read -r mps p50 p99 <<<"$(run_load "$s" "$sc" "r$r")"
      log "$(scenario_label "$sc") round $r: $s $mps msgs/s, p50 ${p50} us, p99 ${p99} us"
      MPS[$sc,$s]+="$mps "
      P50[$sc,$s]+="$p50 "
      P99[$sc,$s]+="$p99 "
    done
  done
done

# ---- report ----------------------------------------------------------------
report() {
  local sc s vals label metric
  printf 'talon vs Bun.serve, WebSocket echo; ws_load on cpu %s, servers on cpu %s, %s x %ss rounds (+%ss warm-up each)\n' \
    "$CLIENT_CPU" "$SERVER_CPU" "$ROUNDS" "$DURATION" "$WARMUP"
  printf '%-18s %-6s %-7s' scenario server metric
  for r in $(seq 1 "$ROUNDS"); do printf ' %10s' "round$r"; done
  printf ' %10s\n' median
  for sc in $SCENARIOS; do
    declare -A med_mps=() med_p99=()
    label=$(scenario_label "$sc")
    for s in $SERVERS; do
      for metric in msgs/s p50_us p99_us; do
        case $metric in
          msgs/s) read -ra vals <<<"${MPS[$sc,$s]}" ;;
          p50_us) read -ra vals <<<"${P50[$sc,$s]}" ;;
          p99_us) read -ra vals <<<"${P99[$sc,$s]}" ;;
        esac
        printf '%-18s %-6s %-7s' "$label" "$s" "$metric"
        for v in "${vals[@]}"; do printf ' %10s' "$v"; done
        med=$(median "${vals[@]}")
        printf ' %10s\n' "$med"
        [[ $metric == msgs/s ]] && med_mps[$s]=$med
        [[ $metric == p99_us ]] && med_p99[$s]=$med
      done
    done
    if have talon && have bun; then
      printf '%-18s %-6s %s\n' "$label" ratio \
        "$(awk -v t="${med_mps[talon]}" -v b="${med_mps[bun]}" -v tp="${med_p99[talon]}" -v bp="${med_p99[bun]}" \
             'BEGIN {
                if (b > 0) printf "talon/bun msgs/s = %.2f", t/b; else printf "msgs/s n/a"
                if (bp > 0) printf ", p99 = %.2f (medians)", tp/bp; else printf ", p99 n/a"
              }')"
    fi
    unset med_mps med_p99
  done
}

report | tee "$LOG_DIR/summary.txt"
log "logs and ws_load output: ${LOG_DIR#"$ROOT/"}/"
