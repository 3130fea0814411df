#!/usr/bin/env bash
# Chat room on pub/sub: talon (bench/chat_server.c: tl_ws_subscribe in open,
# tl_ws_publish in message) against Bun.serve (bench/bun/chat.js:
# ws.subscribe / ws.publish), driven by bench/chat_load.c. The benchmark of
# Bun's "7x more throughput than Node + ws" claim: clients in one room, every
# message a client sends is published to the room, all others receive it.
#
# Each server is pinned to one core (SERVER_CPU, default 0) and chat_load to
# the other (CLIENT_CPU, default 1). Scenarios (SCENARIOS):
#   k1    CLIENTS clients, lock-step rounds: every client sends one message,
#         the round ends when every client has the CLIENTS-1 others', then
#         the next starts
#   k8    the same with INFLIGHT rounds in flight (pipelined)
#   c64   BIG_CLIENTS clients, lock-step rounds
# Each scenario: ROUNDS rounds alternating talon and bun; each round is one
# chat_load run (fresh connections, WARMUP seconds not counted, then
# DURATION seconds measured). chat_load checks every delivery (sender, and
# per sender the exact next sequence number, bytes) and fails on any loss,
# duplicate, reordering or protocol error. Prints deliveries/s (messages
# received by clients; CLIENTS*(CLIENTS-1) per round), the p50 and p99 time
# of one round and deliveries per second of server CPU time, per run, their
# medians, and the talon/bun ratios.
# Traffic goes to 127.0.0.1 only.
#
# Environment (defaults in brackets):
#   DURATION [10]  seconds per round        WARMUP [1]   warm-up seconds per run
#   ROUNDS [3]                              SCENARIOS ["k1 k8 c64"]
#   CLIENTS [16]  SIZE [32]  INFLIGHT [8]   BIG_CLIENTS [64]
#   SERVERS ["talon bun"]
#   TALON_PORT [18101]  BUN_PORT [18102]    SERVER_CPU [0]   CLIENT_CPU [1]
#   SKIP_BUILD [0]  1: do not run cmake (chat_server and chat_load are still
#                  compiled: one gcc line each, against build-bench/)
#   TALON_BIN      talon server binary [build-bench/chat_server]; it gets the
#                  port as its first argument and in PORT, and must serve the
#                  room on /chat
#   BUN            path to a bun binary to use instead of bench/node_modules
#
# Exit status: 0 on success, non-zero if a build, an install, a server start,
# the check or a chat_load run fails. Both servers are killed on exit, error
# or interrupt.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)

DURATION=${DURATION:-10}
WARMUP=${WARMUP:-1}
ROUNDS=${ROUNDS:-3}
SCENARIOS=${SCENARIOS:-k1 k8 c64}
CLIENTS=${CLIENTS:-16}
SIZE=${SIZE:-32}
INFLIGHT=${INFLIGHT:-8}
BIG_CLIENTS=${BIG_CLIENTS:-64}
SERVERS=${SERVERS:-talon bun}
TALON_PORT=${TALON_PORT:-18101}
BUN_PORT=${BUN_PORT:-18102}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
SKIP_BUILD=${SKIP_BUILD:-0}
HOST=127.0.0.1 # used by lib.sh

BUILD_DIR="$ROOT/build-bench"
CHAT_SERVER="$BUILD_DIR/chat_server"
TALON_BIN=${TALON_BIN:-$CHAT_SERVER}
CHAT_LOAD="$BUILD_DIR/chat_load"
RESULTS_DIR="$BENCH_DIR/.results"
STAMP=$(date +%Y%m%d-%H%M%S)
LOG_DIR="$RESULTS_DIR/chat-$STAMP"

# log, die, cleanup, ensure_bun, build_talon, port_open, start_server, median
source "$BENCH_DIR/lib.sh"

for v in DURATION WARMUP ROUNDS CLIENTS SIZE INFLIGHT BIG_CLIENTS \
         TALON_PORT BUN_PORT SERVER_CPU CLIENT_CPU; do
  [[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a non-negative integer (got '${!v}')"
done
(( DURATION > 0 && ROUNDS > 0 && INFLIGHT > 0 )) \
  || die "DURATION, ROUNDS and INFLIGHT must be positive"
(( CLIENTS >= 2 && BIG_CLIENTS >= 2 )) || die "CLIENTS and BIG_CLIENTS must be at least 2"
(( SIZE >= 16 )) || die "SIZE must be at least 16 (sender id and sequence number)"
for s in $SERVERS; do [[ $s == talon || $s == bun ]] || die "unknown server '$s' in SERVERS"; done
for m in $SCENARIOS; do
  [[ $m == k1 || $m == k8 || $m == c64 ]] || die "unknown scenario '$m' in SCENARIOS"
done

mkdir -p "$LOG_DIR"

trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- tools -----------------------------------------------------------------
build_chat_load() {
  log "building chat_load: gcc -O2 -o build-bench/chat_load bench/chat_load.c -luv"
  mkdir -p "$BUILD_DIR"
  gcc -O2 -Wall -o "$CHAT_LOAD" "$BENCH_DIR/chat_load.c" -luv >"$LOG_DIR/chat_load-build.log" 2>&1 \
    || { cat "$LOG_DIR/chat_load-build.log" >&2
         die "building chat_load failed (it needs gcc and libuv1-dev: .ci/install-deps installs them)"; }
}

# talon in Release (lib.sh's cmake configure and build), then the chat server
# against build-bench/libtalon.so, found at run time through the rpath.
build_chat_server() {
  TALON_BIN="$BUILD_DIR/libtalon.so" build_talon
  log "building chat_server: gcc -O2 bench/chat_server.c -Iinclude -Lbuild-bench -ltalon"
  gcc -O2 -Wall -Wextra -Wno-unused-parameter -I"$ROOT/include" \
      -o "$CHAT_SERVER" "$BENCH_DIR/chat_server.c" \
      -L"$BUILD_DIR" -ltalon -Wl,-rpath,"$BUILD_DIR" >"$LOG_DIR/chat_server-build.log" 2>&1 \
    || { cat "$LOG_DIR/chat_server-build.log" >&2
         die "building chat_server failed (log: $LOG_DIR/chat_server-build.log)"; }
  [[ -x $TALON_BIN ]] || die "$TALON_BIN not found"
}

# ---- servers ---------------------------------------------------------------
# Short chat_load runs before measuring: lock-step and pipelined rounds,
# messages bigger than 64 KiB (64-bit length) in binary. chat_load checks
# every delivery and exits non-zero on anything wrong.
verify_server() {
  local name=$1 port=$2
  local out="$LOG_DIR/verify-$name.txt"
  : >"$out"
  local -a a
  for args in "-c 16 -k 1" "-c 5 -k 8 -s 100" "-c 3 -k 2 -s 70000 -b"; do
    read -ra a <<<"$args"
    taskset -c "$CLIENT_CPU" "$CHAT_LOAD" "${a[@]}" -w 0 -d 0.3 "$port" >>"$out" 2>&1 \
      || { cat "$out" >&2; die "$name fails the chat check (chat_load $args -w 0 -d 0.3 $port)"; }
  done
}

port_of() { if [[ $1 == talon ]]; then echo "$TALON_PORT"; else echo "$BUN_PORT"; fi; }

# chat_load arguments of a scenario
scenario_args() {
  case $1 in
    k1)  echo "-c $CLIENTS -k 1 -s $SIZE" ;;
    k8)  echo "-c $CLIENTS -k $INFLIGHT -s $SIZE" ;;
    c64) echo "-c $BIG_CLIENTS -k 1 -s $SIZE" ;;
  esac
}

scenario_label() {
  case $1 in
    k1)  echo "c${CLIENTS}-k1-${SIZE}B" ;;
    k8)  echo "c${CLIENTS}-k${INFLIGHT}-${SIZE}B" ;;
    c64) echo "c${BIG_CLIENTS}-k1-${SIZE}B" ;;
  esac
}

# CPU time (user + system, all threads) a process has used, in clock ticks.
cpu_ticks() { awk '{sub(/^.*\) /, ""); print $12 + $13}' "/proc/$1/stat"; }
CLK_TCK=$(getconf CLK_TCK)

# run_load NAME SCENARIO TAG -> prints
#   "deliveries_per_s round_p50_us round_p99_us deliveries_per_cpu_s"
# The last is every delivery of the run (warm-up and close included) per
# second of CPU time the server used during the run: its cost, which other
# load on the machine disturbs much less than the rate.
run_load() {
  local name=$1 sc=$2 tag=$3 port out line c0 c1
  local -a a
  port=$(port_of "$name")
  read -ra a <<<"$(scenario_args "$sc")"
  out="$LOG_DIR/chat_load-$sc-$name-$tag.txt"
  c0=$(cpu_ticks "${PID[$name]}")
  taskset -c "$CLIENT_CPU" "$CHAT_LOAD" "${a[@]}" -w "$WARMUP" -d "$DURATION" "$port" >"$out" 2>&1 \
    || { cat "$out" >&2; die "chat_load failed against $name ($sc, $tag)"; }
  kill -0 "${PID[$name]}" 2>/dev/null || die "$name died during the $sc run (log: $LOG_DIR/$name.log)"
  c1=$(cpu_ticks "${PID[$name]}")
  line=$(grep '^RESULT ' "$out" || true)
  [[ -n $line ]] || { cat "$out" >&2; die "no RESULT line in chat_load output ($name, $sc)"; }
  grep -q 'warning' "$out" && log "$name $sc $tag: $(grep warning "$out" | tr '\n' ' ')"
  awk -v ticks=$((c1 - c0)) -v hz="$CLK_TCK" \
      '{for (i = 2; i <= NF; i++) {split($i, kv, "="); v[kv[1]] = kv[2]}
        printf "%s %s %s %d\n", v["deliveries_per_s"], v["round_p50_us"], v["round_p99_us"],
               (ticks > 0 ? v["all_deliveries"] * hz / ticks : 0)}' <<<"$line"
}

# ---- main ------------------------------------------------------------------
command -v taskset >/dev/null 2>&1 || die "taskset (util-linux) is required"
command -v gcc >/dev/null 2>&1 || die "gcc is required to build bench/chat_load.c"
ncpu=$(nproc)
(( SERVER_CPU < ncpu && CLIENT_CPU < ncpu )) \
  || die "SERVER_CPU=$SERVER_CPU / CLIENT_CPU=$CLIENT_CPU out of range for $ncpu CPU(s)"
(( SERVER_CPU != CLIENT_CPU )) || log "warning: server and chat_load share CPU $SERVER_CPU"

have() { [[ " $SERVERS " == *" $1 "* ]]; }
build_chat_load
if have talon; then
  if [[ $TALON_BIN == "$CHAT_SERVER" ]]; then
    build_chat_server
  else
    [[ -x $TALON_BIN ]] || die "TALON_BIN=$TALON_BIN not found"
  fi
fi
if have bun; then ensure_bun; fi

if have talon; then start_server talon "$TALON_PORT" "$TALON_BIN" "$TALON_PORT"; fi
if have bun; then
  log "bun: $BUN ($("$BUN" --version))"
  start_server bun "$BUN_PORT" "$BUN" "$BENCH_DIR/bun/chat.js" "$BUN_PORT"
fi

declare -A DPS=() P50=() P99=() DPC=()
for sc in $SCENARIOS; do
  for r in $(seq 1 "$ROUNDS"); do
    for s in $SERVERS; do
      read -r dps p50 p99 dpc <<<"$(run_load "$s" "$sc" "r$r")"
      log "$(scenario_label "$sc") round $r: $s $dps deliveries/s, round p50 ${p50} us, p99 ${p99} us, $dpc deliveries per server CPU-second"
      DPS[$sc,$s]+="$dps "
      P50[$sc,$s]+="$p50 "
      P99[$sc,$s]+="$p99 "
      DPC[$sc,$s]+="$dpc "
    done
  done
done

# ---- report ----------------------------------------------------------------
report() {
  local sc s vals label metric med
  printf 'talon vs Bun.serve, chat room on pub/sub; chat_load on cpu %s, servers on cpu %s, %s x %ss rounds (+%ss warm-up each)\n' \
    "$CLIENT_CPU" "$SERVER_CPU" "$ROUNDS" "$DURATION" "$WARMUP"
  printf '%-16s %-6s %-9s' scenario server metric
  for r in $(seq 1 "$ROUNDS"); do printf ' %10s' "run$r"; done
  printf ' %10s\n' median
  for sc in $SCENARIOS; do
    declare -A med_dps=() med_p99=() med_dpc=()
    label=$(scenario_label "$sc")
    for s in $SERVERS; do
      for metric in deliv/s round_p50 round_p99 deliv/cpu; do
        case $metric in
          deliv/s)   read -ra vals <<<"${DPS[$sc,$s]}" ;;
          round_p50) read -ra vals <<<"${P50[$sc,$s]}" ;;
          round_p99) read -ra vals <<<"${P99[$sc,$s]}" ;;
          deliv/cpu) read -ra vals <<<"${DPC[$sc,$s]}" ;;
        esac
        printf '%-16s %-6s %-9s' "$label" "$s" "$metric"
        for v in "${vals[@]}"; do printf ' %10s' "$v"; done
        med=$(median "${vals[@]}")
        printf ' %10s\n' "$med"
        [[ $metric == deliv/s ]] && med_dps[$s]=$med
        [[ $metric == round_p99 ]] && med_p99[$s]=$med
        [[ $metric == deliv/cpu ]] && med_dpc[$s]=$med
      done
    done
    if have talon && have bun; then
      printf '%-16s %-6s %s\n' "$label" ratio \
        "$(awk -v t="${med_dps[talon]}" -v b="${med_dps[bun]}" -v tp="${med_p99[talon]}" -v bp="${med_p99[bun]}" \
               -v tc="${med_dpc[talon]}" -v bc="${med_dpc[bun]}" \
             'BEGIN {
                if (b > 0) printf "talon/bun deliveries/s = %.2f", t/b; else printf "deliveries/s n/a"
                if (bp > 0) printf ", round p99 = %.2f", tp/bp; else printf ", round p99 n/a"
                if (bc > 0) printf ", deliveries per CPU-s = %.2f (medians)", tc/bc; else printf ", per CPU-s n/a"
              }')"
    fi
    unset med_dps med_p99 med_dpc
  done
}

report | tee "$LOG_DIR/summary.txt"
log "logs and chat_load output: ${LOG_DIR#"$ROOT/"}/"
