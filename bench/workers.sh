#!/usr/bin/env bash
# Workers: what several talon workers give, what crossing workers costs,
# and what Bun loses without a shared room. Runs bench/http.sh and
# bench/chat.sh per configuration (each alternates its servers over ROUNDS
# rounds), then a loss test of its own. Parts (PARTS):
#
#   http     hello world (wrk, plain and pipelined): talon with 1 worker on
#            SERVER_CPU (Bun.serve beside it), then talon with WORKERS_N
#            workers on ALL_CPUS with wrk on ALL_CPUS too (on a 2-core
#            machine there is no core left for the client: say so when you
#            quote it)
#   chat     chat fan-out (CHAT_SCENARIOS): the same two configurations
#   cross    the cost of crossing workers: 1 worker on SERVER_CPU against
#            2 workers both on SERVER_CPU (the room's subscribers spread over
#            the 2 workers, so most deliveries cross), client on CLIENT_CPU;
#            same core budget, so the difference is the crossing
#   loss     2 talon workers against 2 Bun.serve processes sharing the port
#            with reusePort, same client (bench/chat_load.c -L: it counts
#            deliveries that never arrive instead of failing): Bun's
#            processes each have their own room
#
# Environment (defaults in brackets): PARTS ["http chat cross loss"]
#   DURATION [5] ROUNDS [3] WARMUP [1]  SERVER_CPU [0]  CLIENT_CPU [1]
#   ALL_CPUS [0-(nproc-1)]  WORKERS_N [nproc]  CHAT_SCENARIOS ["c16k16 c256k1"]
#   LOSS_SCENARIOS ["c16k4 c64k1"]  SKIP_BUILD [0]  BUN
# Traffic goes to 127.0.0.1 only. Exit status non-zero if a part fails.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
NCPU=$(nproc)
PARTS=${PARTS:-http chat cross loss}
DURATION=${DURATION:-5}
ROUNDS=${ROUNDS:-3}
WARMUP=${WARMUP:-1}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
ALL_CPUS=${ALL_CPUS:-0-$((NCPU - 1))}
WORKERS_N=${WORKERS_N:-$NCPU}
CHAT_SCENARIOS=${CHAT_SCENARIOS:-c16k16 c256k1}
LOSS_SCENARIOS=${LOSS_SCENARIOS:-c16k4 c64k1}
SKIP_BUILD=${SKIP_BUILD:-0}
HOST=127.0.0.1
TALON_PORT=18121
BUN_PORT=18122
STAMP=$(date +%Y%m%d-%H%M%S)
LOG_DIR="$BENCH_DIR/.results/workers-$STAMP"
mkdir -p "$LOG_DIR"

# log, die, cleanup, ensure_bun, check_cpus, ...
source "$BENCH_DIR/lib.sh"
trap cleanup EXIT

export DURATION ROUNDS WARMUP SKIP_BUILD
section() { printf '\n==== %s\n' "$*"; }

# The sub-benchmarks build talon in build-bench the first time; later runs
# reuse that build.
sub() { "$@"; SKIP_BUILD=1; export SKIP_BUILD; }

for part in $PARTS; do
  case $part in
  http)
    section "http: 1 worker on cpu $SERVER_CPU, wrk on cpu $CLIENT_CPU (Bun.serve beside)"
    WORKERS=1 sub bash "$BENCH_DIR/http.sh"
    section "http: $WORKERS_N workers on cpus $ALL_CPUS, wrk on cpus $ALL_CPUS"
    WORKERS=$WORKERS_N SERVER_CPU=$ALL_CPUS CLIENT_CPU=$ALL_CPUS SERVERS=talon \
      sub bash "$BENCH_DIR/http.sh"
    ;;
  chat)
    section "chat: 1 worker on cpu $SERVER_CPU, client on cpu $CLIENT_CPU (Bun.serve beside)"
    WORKERS=1 SCENARIOS=$CHAT_SCENARIOS sub bash "$BENCH_DIR/chat.sh"
    section "chat: $WORKERS_N workers on cpus $ALL_CPUS, client on cpus $ALL_CPUS"
    WORKERS=$WORKERS_N SERVER_CPU=$ALL_CPUS CLIENT_CPU=$ALL_CPUS SERVERS=talon \
      SCENARIOS=$CHAT_SCENARIOS sub bash "$BENCH_DIR/chat.sh"
    ;;
  cross)
    section "cross: 1 worker on cpu $SERVER_CPU, client on cpu $CLIENT_CPU"
    WORKERS=1 SERVERS=talon SCENARIOS=$CHAT_SCENARIOS sub bash "$BENCH_DIR/chat.sh"
    section "cross: 2 workers both on cpu $SERVER_CPU, client on cpu $CLIENT_CPU"
    WORKERS=2 SERVERS=talon SCENARIOS=$CHAT_SCENARIOS sub bash "$BENCH_DIR/chat.sh"
    ;;
  loss) ;;
  *) die "unknown part '$part' (http chat cross loss)" ;;
  esac
done

[[ " $PARTS " == *" loss "* ]] || exit 0

# ---- loss: 2 talon workers against 2 Bun processes with reusePort --------
section "loss: talon WORKERS=2 vs 2 Bun.serve processes (reusePort), servers on cpus $ALL_CPUS, client on cpu $CLIENT_CPU"
check_cpus
ensure_bun
CHAT_LOAD="$ROOT/build-bench/chat_load"
if [[ ! -x $CHAT_LOAD || $CHAT_LOAD -ot $BENCH_DIR/chat_load.c ]]; then
  mkdir -p "$ROOT/build-bench"
  gcc -O2 -Wall -o "$CHAT_LOAD" "$BENCH_DIR/chat_load.c" "$BENCH_DIR/wsclient.c" -luv -lz \
    || die "building chat_load failed"
fi
TALON_BIN=${TALON_BIN:-$ROOT/build-bench/bench/chat_server}
build_talon

verify_server() { :; }
start_loss_servers() {
  local n=$1
  export CLIENTS_COUNT=$n
  SERVER_CPU=$ALL_CPUS WORKERS=2 start_server talon "$TALON_PORT" "$TALON_BIN" "$TALON_PORT"
  # Two processes on one port; each one's own CLIENTS_COUNT is never
  # reached (it sees only its share), which -L does not need.
  REUSE_PORT=1 SERVER_CPU=$ALL_CPUS start_server bun1 "$BUN_PORT" "$BUN" \
    "$BENCH_DIR/bunchat/chat-server.js" "$BUN_PORT"
  PORT=$BUN_PORT HOST=$HOST REUSE_PORT=1 taskset -c "$ALL_CPUS" "$BUN" \
    "$BENCH_DIR/bunchat/chat-server.js" "$BUN_PORT" >"$LOG_DIR/bun2.log" 2>&1 &
  PID[bun2]=$!
  for _ in $(seq 1 100); do grep -q "listening on http://" "$LOG_DIR/bun2.log" && break; sleep 0.1; done
}
stop_loss_servers() {
  local s
  for s in talon bun1 bun2; do
    [[ -n ${PID[$s]:-} ]] || continue
    kill "${PID[$s]}" 2>/dev/null || true
    wait "${PID[$s]}" 2>/dev/null || true
    unset "PID[$s]"
  done
}

printf '%-8s %-12s %-10s' scenario server metric
for r in $(seq 1 "$ROUNDS"); do printf ' %11s' "round$r"; done
printf '\n'
for sc in $LOSS_SCENARIOS; do
  [[ $sc =~ ^c([0-9]+)k([0-9]+)$ ]] || die "bad scenario '$sc' (cNkM)"
  n=${BASH_REMATCH[1]} k=${BASH_REMATCH[2]}
  stop_loss_servers
  start_loss_servers "$n"
  declare -A MPS=() LOST=()
  for r in $(seq 1 "$ROUNDS"); do
    for s in talon bun; do
      port=$TALON_PORT; [[ $s == bun ]] && port=$BUN_PORT
      out="$LOG_DIR/loss-$sc-$s-$r.txt"
      taskset -c "$CLIENT_CPU" "$CHAT_LOAD" -L -c "$n" -k "$k" -w "$WARMUP" \
        -d "$DURATION" "$port" >"$out" 2>&1 || { cat "$out" >&2; die "chat_load -L failed ($s)"; }
      line=$(grep '^RESULT ' "$out")
      MPS[$s]+="$(sed -E 's/.*msgs_per_s=([0-9]+).*/\1/' <<<"$line") "
      LOST[$s]+="$(awk '{for (i = 2; i <= NF; i++) {split($i, kv, "="); v[kv[1]] = kv[2]}
                       printf "%.1f%%", v["expected"] ? 100 * v["lost"] / v["expected"] : 0}' <<<"$line") "
    done
  done
  for s in talon bun; do
    label=$s; [[ $s == talon ]] && label="talon(2w)" || label="bun(2proc)"
    printf '%-8s %-12s %-10s' "$sc" "$label" msgs/s
    for v in ${MPS[$s]}; do printf ' %11s' "$v"; done
    printf '\n%-8s %-12s %-10s' "$sc" "$label" lost
    for v in ${LOST[$s]}; do printf ' %11s' "$v"; done
    printf '\n'
  done
done
stop_loss_servers
