#!/usr/bin/env bash
# TLS benchmarks: talon (examples/hello, examples/echo, bench/chat_server
# with TLS_CERT/TLS_KEY) against Bun.serve with `tls: {cert, key}` (the
# bench/bun scripts read the same variables), same client, same pinning
# (server on SERVER_CPU, client on CLIENT_CPU), rounds alternating talon
# and bun, medians. A self-signed pair is made in the results folder
# (scripts/dev-cert.sh). Parts (PARTS):
#   https      wrk over TLS on GET /: keep-alive, one request in flight per
#              connection, and pipelined (PIPELINE per write)
#   handshake  new TLS connections per second: wrk with Connection: close
#              (every request a full handshake; wrk does not resume)
#   wss        the chat fan-out of bench/chat.sh over wss:// with its JS
#              client run by bun (bench/bunchat/chat-client.js): CHAT_CLIENTS
#              clients, BATCH messages per batch; talon also over ws://
#              (what encrypting every frame per subscriber costs)
#   idle       bytes per idle connection: IDLE_N WebSocket connections held
#              open by bench/idle_ws.py, server RSS growth divided by N,
#              for talon and bun, ws:// and wss://; then IDLE_HTTP_N
#              keep-alive HTTP connections to the hello servers, each after
#              one GET /, http:// and https:// (fewer, read after 1 s: the
#              servers close idle keep-alive connections after 5 s)
# Traffic goes to 127.0.0.1 only.
#
# Environment (defaults in brackets):
#   DURATION [5]  ROUNDS [3]  CONNECTIONS [64]  PIPELINE [16]
#   CHAT_CLIENTS ["16 256"]  BATCH [1600 / clients]  IDLE_N [10000]
#   IDLE_HTTP_N [2000]
#   PARTS ["https handshake wss idle"]  SERVERS ["talon bun"]
#   PORT_A [18181] PORT_B [18182] (talon plain, TLS)  BUN_PORT [18183]
#   SERVER_CPU [0]  CLIENT_CPU [1]  SKIP_BUILD [0]  BUN
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
DURATION=${DURATION:-5}
ROUNDS=${ROUNDS:-3}
CONNECTIONS=${CONNECTIONS:-64}
PIPELINE=${PIPELINE:-16}
CHAT_CLIENTS=${CHAT_CLIENTS:-16 256}
BATCH=${BATCH:-}
IDLE_N=${IDLE_N:-10000}
IDLE_HTTP_N=${IDLE_HTTP_N:-2000}
PARTS=${PARTS:-https handshake wss idle}
SERVERS=${SERVERS:-talon bun}
PORT_A=${PORT_A:-18181}
PORT_B=${PORT_B:-18182}
BUN_PORT=${BUN_PORT:-18183}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
SKIP_BUILD=${SKIP_BUILD:-0}
HOST=127.0.0.1
BUILD_DIR="$ROOT/build-bench"
TALON_BIN="$BUILD_DIR/examples/hello"
RESULTS_DIR="$BENCH_DIR/.results"
LOG_DIR="$RESULTS_DIR/tls-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$LOG_DIR"

source "$BENCH_DIR/lib.sh"
trap cleanup EXIT INT TERM

verify_server() { :; }

build_talon
ensure_bun
log "bun $("$BUN" --version)"
sh "$ROOT/scripts/dev-cert.sh" "$LOG_DIR/cert" >/dev/null
export TLS_CERT="$LOG_DIR/cert/cert.pem" TLS_KEY="$LOG_DIR/cert/key.pem"

# start NAME WHAT: a server for part WHAT; sets URL_BASE (https://...) and
# leaves its pid in PID[NAME].
start() {
  local name=$1 what=$2
  case $name-$what in
    talon-http) TLS_PORT=$PORT_B start_server talon "$PORT_A" "$BUILD_DIR/examples/hello" "$PORT_A" ;;
    talon-ws)   TLS_PORT=$PORT_B start_server talon "$PORT_A" "$BUILD_DIR/examples/echo" "$PORT_A" ;;
    talon-chat) start_server talon "$PORT_B" "$BUILD_DIR/bench/chat_server" "$PORT_B" ;;
    talonws-chat) start_server talonws "$PORT_B" env -u TLS_CERT -u TLS_KEY "$BUILD_DIR/bench/chat_server" "$PORT_B" ;;
    bun-http)   start_server bun "$BUN_PORT" "$BUN" "$BENCH_DIR/bun/hello.js" "$BUN_PORT" ;;
    bun-ws)     start_server bun "$BUN_PORT" "$BUN" "$BENCH_DIR/bun/echo.js" "$BUN_PORT" ;;
    bun-chat)   start_server bun "$BUN_PORT" "$BUN" "$BENCH_DIR/bunchat/chat-server.js" "$BUN_PORT" ;;
  esac
  if [[ $name == talon* ]]; then TLS_AT=$PORT_B; PLAIN_AT=$PORT_A; else TLS_AT=$BUN_PORT; PLAIN_AT=; fi
}
stop() {
  local pid=${PID[$1]:-}
  [[ -n $pid ]] || return 0
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  unset "PID[$1]"
}

wrk_rps() { # wrk args... -> requests/s
  taskset -c "$CLIENT_CPU" wrk -t1 "$@" | tee -a "$LOG_DIR/wrk.log" |
    awk '/Requests\/sec/ {printf "%d\n", $2}' || true
}


declare -A R=()
record() { R[$1]="${R[$1]:-} $2"; printf '  %-28s %s\n' "$1" "$2"; }

# wrk_cpu NAME LABEL wrk-args...: records requests/s and requests per
# second of the server's own CPU time (robust when the client is the
# limit, as it often is here).
wrk_cpu() {
  local name=$1 label=$2 t0 t1 rps
  shift 2
  t0=$(cpu_ticks "${PID[$name]}")
  rps=$(wrk_rps "$@")
  t1=$(cpu_ticks "${PID[$name]}")
  record "$name $label/s" "$rps"
  record "$name $label/server-cpu-s" "$(awk -v r="${rps:-0}" -v d="$DURATION" -v t=$((t1 - t0)) \
    -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%d\n", (t > 0) ? r * d / (t / hz) : 0}')"
}

part_https() {
  for round in $(seq 1 "$ROUNDS"); do
    for s in $SERVERS; do
      start "$s" http
      local url="https://127.0.0.1:$TLS_AT/"
      wrk_cpu "$s" "https keep-alive req" -c"$CONNECTIONS" -d"${DURATION}s" "$url"
      wrk_cpu "$s" "https pipelined req" -c"$CONNECTIONS" -d"${DURATION}s" -s "$BENCH_DIR/pipeline.lua" "$url" -- "$PIPELINE"
      # Every request a new connection and a full handshake.
      wrk_cpu "$s" "handshakes" -c16 -d"${DURATION}s" -H 'Connection: close' "$url"
      stop "$s"
    done
  done
}

part_wss() {
  for n in $CHAT_CLIENTS; do
    for round in $(seq 1 "$ROUNDS"); do
      # talonws: talon over plain ws://, for the cost of encrypting each
      # published frame per subscriber.
      for s in $SERVERS talonws; do
        [[ $s == talonws && " $SERVERS " != *" talon "* ]] && continue
        CLIENTS_COUNT=$n start "$s" chat
        local out batch=${BATCH:-$((1600 / n > 0 ? 1600 / n : 1))} scheme=wss
        [[ $s == talonws ]] && scheme=ws
        out=$(SERVER="$scheme://127.0.0.1:$TLS_AT/" CLIENTS_COUNT=$n BATCH=$batch \
              DURATION=$DURATION NODE_TLS_REJECT_UNAUTHORIZED=0 \
              taskset -c "$CLIENT_CPU" "$BUN" "$BENCH_DIR/bunchat/chat-client.js" 2>>"$LOG_DIR/chat-client.log" |
              awk '/^RESULT/ {for (i=1;i<=NF;i++) if ($i ~ /^msgs_per_s=/) {sub("msgs_per_s=","",$i); print int($i)}}' || true)
        record "${s%ws} $scheme chat ${n}x$batch msg/s" "${out:-failed}"
        stop "$s"
      done
    done
  done
}

part_idle() {
  for s in $SERVERS; do
    for scheme in ws wss; do
      if [[ $s == bun && $scheme == ws ]]; then TLS_CERT= start bun ws; else start "$s" ws; fi
      local port=$TLS_AT
      [[ $scheme == ws ]] && port=${PLAIN_AT:-$BUN_PORT}
      local r
      r=$(taskset -c "$CLIENT_CPU" /usr/bin/python3 "$BENCH_DIR/idle_ws.py" "${PID[$s]}" \
          "$scheme://127.0.0.1:$port/ws" "$IDLE_N" | awk '/^RESULT/ {for (i=1;i<=NF;i++) if ($i ~ /^bytes_per_conn=/) {sub("bytes_per_conn=","",$i); print $i}}' || true)
      record "$s idle $scheme bytes/conn" "${r:-failed}"
      stop "$s"
    done
    for scheme in http https; do
      if [[ $s == bun && $scheme == http ]]; then TLS_CERT= start bun http; else start "$s" http; fi
      local port=$TLS_AT
      [[ $scheme == http ]] && port=${PLAIN_AT:-$BUN_PORT}
      local r
      r=$(taskset -c "$CLIENT_CPU" /usr/bin/python3 "$BENCH_DIR/idle_ws.py" --settle 1 "${PID[$s]}" \
          "$scheme://127.0.0.1:$port/" "$IDLE_HTTP_N" | awk '/^RESULT/ {for (i=1;i<=NF;i++) if ($i ~ /^bytes_per_conn=/) {sub("bytes_per_conn=","",$i); print $i}}' || true)
      record "$s idle $scheme bytes/conn" "${r:-failed}"
      stop "$s"
    done
  done
}

for p in $PARTS; do
  case $p in
    https) log "HTTPS hello and handshakes"; part_https ;;
    handshake) ;; # measured with https
    wss) log "WSS chat fan-out"; part_wss ;;
    idle) log "idle connections (WebSocket, then HTTP keep-alive)"; part_idle ;;
  esac
done

echo
echo "medians (the machine may be shared: see the log in $LOG_DIR)"
for k in "${!R[@]}"; do
  # shellcheck disable=SC2086
  printf '  %-28s %s   (rounds:%s)\n' "$k" "$(median ${R[$k]} 2>/dev/null || echo -)" "${R[$k]}"
done | sort
