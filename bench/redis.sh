#!/usr/bin/env bash
# Chat fan-out across processes bridged by Redis: the clients of one room
# split over two talon chat_server processes (REDIS_URL), against the same
# room on one process, and against the same room on Socket.IO 4 with
# @socket.io/redis-adapter over two Node processes on the same Redis
# (bench/sio/chat-server.js; npm packages in bench/node_modules, installed
# from bench/package.json when missing). Setups, in alternating rounds:
#   bridged  talon, 2 processes + Redis   single  talon, 1 process
#   sio      Socket.IO, 2 Node processes + the same Redis
# Same client for all: bench/chat_load.c (-L with both ports: client i
# connects to port i mod 2; -S speaks Socket.IO's framing over the same
# WebSocket code: engine.io packets, 42["msg","..."] events, JSON escapes,
# so its work per message is a little larger for Socket.IO). Prints
# messages received per second by all clients, deliveries that never
# arrived, publish-to-delivery latency (send to arrival at the other
# clients, all on this machine's clock: across the bridge for half the
# pairs), and the client's CPU use (to show it is not what limits).
#
# Environment (defaults in brackets): SCENARIOS ["c16k4 c64k1"]
#   SETUPS ["bridged single sio"]
#   DURATION [5] ROUNDS [3] WARMUP [1]
#   SERVER_CPUS ["0 1"] (process A's and B's)  CLIENT_CPU [0-1]
#   REDIS_CPU [0-1]  SKIP_BUILD [0]
set -euo pipefail
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
SCENARIOS=${SCENARIOS:-c16k4 c64k1}
DURATION=${DURATION:-5}
ROUNDS=${ROUNDS:-3}
WARMUP=${WARMUP:-1}
SERVER_CPUS=${SERVER_CPUS:-0 1}
CLIENT_CPU=${CLIENT_CPU:-0-1}
REDIS_CPU=${REDIS_CPU:-0-1}
SKIP_BUILD=${SKIP_BUILD:-0}
SETUPS=${SETUPS:-bridged single sio}
HOST=127.0.0.1
SERVER_CPU=0 # lib.sh's start_server pins to it; set per server below
STAMP=$(date +%Y%m%d-%H%M%S)
LOG_DIR="$BENCH_DIR/.results/redis-$STAMP"
mkdir -p "$LOG_DIR"
source "$BENCH_DIR/lib.sh"
trap cleanup EXIT

command -v redis-server >/dev/null || die "redis-server is missing (.ci/install-deps)"
TALON_BIN="$ROOT/build-bench/bench/chat_server"
build_talon
CHAT_LOAD="$ROOT/build-bench/chat_load"
gcc -O2 -Wall -o "$CHAT_LOAD" "$BENCH_DIR/chat_load.c" "$BENCH_DIR/wsclient.c" -luv -lz \
  || die "building chat_load failed"

RPORT=18131 A=18132 B=18133 ONE=18134
taskset -c "$REDIS_CPU" redis-server --port "$RPORT" --bind 127.0.0.1 --save "" \
  --appendonly no --dir "$LOG_DIR" >"$LOG_DIR/redis.log" 2>&1 &
PID[redis]=$!
for _ in $(seq 50); do redis-cli -p "$RPORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
verify_server() { :; }
read -r cpu_a cpu_b <<<"$SERVER_CPUS"
export REDIS_URL="redis://127.0.0.1:$RPORT" CLIENTS_COUNT=1000000
SERVER_CPU=$cpu_a start_server a "$A" "$TALON_BIN" "$A"
SERVER_CPU=$cpu_b start_server b "$B" "$TALON_BIN" "$B"
unset REDIS_URL
SERVER_CPU=$cpu_a start_server one "$ONE" "$TALON_BIN" "$ONE"

SA=18135 SB=18136
if [[ " $SETUPS " == *" sio "* ]]; then
  command -v node >/dev/null || die "node is missing (Socket.IO setup; SETUPS without sio skips it)"
  if [[ ! -d $BENCH_DIR/node_modules/socket.io || ! -d $BENCH_DIR/node_modules/@socket.io/redis-adapter \
        || ! -d $BENCH_DIR/node_modules/redis ]]; then
    log "installing the npm packages of bench/package.json (socket.io, its redis adapter)"
    (cd "$BENCH_DIR" && npm ci --no-audit --no-fund >"$LOG_DIR/npm.log" 2>&1) \
      || { cat "$LOG_DIR/npm.log" >&2; die "npm ci in bench/ failed"; }
  fi
  export REDIS_URL="redis://127.0.0.1:$RPORT"
  SERVER_CPU=$cpu_a start_server sio_a "$SA" node "$BENCH_DIR/sio/chat-server.js" "$SA"
  SERVER_CPU=$cpu_b start_server sio_b "$SB" node "$BENCH_DIR/sio/chat-server.js" "$SB"
  unset REDIS_URL
fi

printf 'chat fan-out, clients split over 2 processes bridged by Redis vs 1 process; Socket.IO 2 processes + redis-adapter\n'
printf 'processes on cpus %s, redis on %s, client on %s; %s rounds x %ss\n' \
  "$SERVER_CPUS" "$REDIS_CPU" "$CLIENT_CPU" "$ROUNDS" "$DURATION"
printf '%-8s %-9s %-11s' scenario setup metric
for r in $(seq 1 "$ROUNDS"); do printf ' %10s' "round$r"; done
printf '\n'
for sc in $SCENARIOS; do
  [[ $sc =~ ^c([0-9]+)k([0-9]+)$ ]] || die "bad scenario '$sc' (cNkM)"
  n=${BASH_REMATCH[1]} k=${BASH_REMATCH[2]}
  declare -A M=() L=() P50=() P99=() CCPU=()
  for r in $(seq 1 "$ROUNDS"); do
    for setup in $SETUPS; do
      flags=-L
      case $setup in
        bridged) ports="$A,$B" ;; single) ports=$ONE ;;
        sio) ports="$SA,$SB" flags=-S ;;
        *) die "unknown setup '$setup'" ;;
      esac
      out="$LOG_DIR/$sc-$setup-$r.txt"
      taskset -c "$CLIENT_CPU" "$CHAT_LOAD" "$flags" -c "$n" -k "$k" -w "$WARMUP" \
        -d "$DURATION" "$ports" >"$out" 2>&1 || { cat "$out" >&2; die "chat_load failed"; }
      line=$(grep '^RESULT ' "$out")
      get() { sed -E "s/.* $1=([0-9.]+).*/\\1/" <<<"$line"; }
      M[$setup]+="$(get msgs_per_s) "
      L[$setup]+="$(awk '{for (i = 2; i <= NF; i++) {split($i, kv, "="); v[kv[1]] = kv[2]}
                      printf "%d", v["lost"]}' <<<"$line") "
      P50[$setup]+="$(get dlv_p50_us) "
      P99[$setup]+="$(get dlv_p99_us) "
      CCPU[$setup]+="$(get client_cpu_pct) "
    done
  done
  for setup in $SETUPS; do
    for metric in msgs/s lost dlv_p50_us dlv_p99_us client_cpu%; do
      case $metric in
        msgs/s) vals=${M[$setup]} ;; lost) vals=${L[$setup]} ;;
        dlv_p50_us) vals=${P50[$setup]} ;; dlv_p99_us) vals=${P99[$setup]} ;;
        client_cpu%) vals=${CCPU[$setup]} ;;
      esac
      printf '%-8s %-9s %-11s' "$sc" "$setup" "$metric"
      for v in $vals; do printf ' %10s' "$v"; done
      printf '\n'
    done
  done
done
printf 'redis INFO stats: %s\n' "$(redis-cli -p "$RPORT" info stats | grep -E 'total_commands_processed|instantaneous_ops' | tr -d '\r' | tr '\n' ' ')"
