#!/usr/bin/env bash
# HTTP benchmark: talon's examples/hello against Bun.serve's hello world
# and, when built (bench/uws-build.sh), uWebSockets' own HelloWorld.
#
# Each server is pinned to one core (SERVER_CPU, default 0) and wrk to the
# other (CLIENT_CPU, default 1), wrk with one thread. Two modes are measured:
#   plain      CONNECTIONS keep-alive connections, one request in flight each
#   pipelined  the same, with PIPELINE requests written at once (pipeline.lua)
# Each mode: a short warm-up per server, then ROUNDS rounds alternating talon
# and bun, DURATION seconds each. Prints requests/s per round, the median and
# mean, and the ratios of the medians; then the same for requests per server
# CPU-second (wrk's request count over the server's utime + stime in the
# round, /proc/PID/stat: the figure to compare when wrk's core is the
# limit), and per round the server's CPU % and how busy the client's core
# was (/proc/stat; near 100: wrk is the limit). Each round also prints the load
# average before it and the CPU time stolen by the hypervisor during it
# (/proc/stat); a round with more than STEAL_MAX% stolen is discarded (left
# out of the median, marked with a * in the table). Traffic goes to
# 127.0.0.1 only.
#
# Environment (defaults in brackets):
#   DURATION [10]  seconds per round        WARMUP [2]       seconds of warm-up
#   CONNECTIONS [64]                        ROUNDS [3]
#   PIPELINE [16]  requests per write in pipelined mode
#   MODES ["plain pipelined"]               SERVERS ["talon bun"]; "uws":
#                  uWebSockets' HelloWorld (UWS_BIN [build-bench/uws/HelloWorld],
#                  built by bench/uws-build.sh; it listens on port 3000, which
#                  must be free, and answers "Hello world!")
#   STEAL_MAX [10] discard rounds with more steal time than this (percent)
#   TALON_PORT [18081]  BUN_PORT [18082]    SERVER_CPU [0]   CLIENT_CPU [1]
#                  SERVER_CPU / CLIENT_CPU: CPU lists for taskset -c (0, 0,1, 0-3)
#   WORKERS [1]    talon worker threads (0: one per CPU), all on SERVER_CPU
#   SKIP_BUILD [0]  1: use the existing build-bench/examples/hello as it is
#   TALON_BIN      talon server binary [build-bench/examples/hello]; it gets the
#                  port as its first argument and in PORT
#   VERIFY [1]     check first that 1 and PIPELINE pipelined GET / get exactly
#                  as many "200 Hello World" responses; 0: only warn
#   BUN            path to a bun binary to use instead of bench/node_modules
#
# Exit status: 0 on success, non-zero if a build, an install, a server start,
# the response check (VERIFY) or a wrk run fails. Both servers are killed on
# exit, error or interrupt.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)

DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
CONNECTIONS=${CONNECTIONS:-64}
ROUNDS=${ROUNDS:-3}
PIPELINE=${PIPELINE:-16}
MODES=${MODES:-plain pipelined}
SERVERS=${SERVERS:-talon bun}
STEAL_MAX=${STEAL_MAX:-10}
UWS_BIN=${UWS_BIN:-"$ROOT/build-bench/uws/HelloWorld"}
UWS_PORT=3000
TALON_PORT=${TALON_PORT:-18081}
BUN_PORT=${BUN_PORT:-18082}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
SKIP_BUILD=${SKIP_BUILD:-0}
VERIFY=${VERIFY:-1}
HOST=127.0.0.1

BUILD_DIR="$ROOT/build-bench"
TALON_BIN=${TALON_BIN:-"$BUILD_DIR/examples/hello"}
RESULTS_DIR="$BENCH_DIR/.results"
STAMP=$(date +%Y%m%d-%H%M%S)
LOG_DIR="$RESULTS_DIR/$STAMP"

# log, die, cleanup, ensure_bun, build_talon, port_open, start_server, median
source "$BENCH_DIR/lib.sh"

for v in DURATION WARMUP CONNECTIONS ROUNDS PIPELINE TALON_PORT BUN_PORT; do
  [[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a non-negative integer (got '${!v}')"
done
(( DURATION > 0 && ROUNDS > 0 && CONNECTIONS > 0 && PIPELINE > 0 )) \
  || die "DURATION, ROUNDS, CONNECTIONS and PIPELINE must be positive"
for s in $SERVERS; do [[ $s == talon || $s == bun || $s == uws ]] || die "unknown server '$s' in SERVERS"; done
for m in $MODES; do [[ $m == plain || $m == pipelined ]] || die "unknown mode '$m' in MODES"; done

mkdir -p "$LOG_DIR"

# ---- cleanup (cleanup() is in lib.sh) ------------------------------------
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- tools -----------------------------------------------------------------
ensure_wrk() {
  command -v wrk >/dev/null 2>&1 && return
  log "wrk not found; installing it with apt-get"
  command -v apt-get >/dev/null 2>&1 || die "wrk is missing and apt-get is not available"
  local sudo=""; (( EUID == 0 )) || sudo="sudo"
  $sudo apt-get install -y wrk >/dev/null 2>&1 \
    || { $sudo apt-get update >/dev/null && $sudo apt-get install -y wrk >/dev/null; } \
    || die "could not install wrk"
  command -v wrk >/dev/null 2>&1 || die "wrk still missing after install"
}

# ---- servers ---------------------------------------------------------------
# Sends N (default 1) pipelined GET / on one fresh connection, the last one
# with "Connection: close"; prints the raw bytes received.
http_get() {
  timeout 3 bash -c '
    exec 3<>"/dev/tcp/$0/$1" || exit 1
    for ((i = 1; i < $2; i++)); do
      printf "GET / HTTP/1.1\r\nHost: %s:%s\r\n\r\n" "$0" "$1"
    done >&3
    printf "GET / HTTP/1.1\r\nHost: %s:%s\r\nConnection: close\r\n\r\n" "$0" "$1" >&3
    cat <&3' "$HOST" "$1" "${2:-1}" 2>/dev/null
}

# The numbers only mean something if every request gets exactly one
# "200 Hello World" response: wrk counts responses, not requests.
verify_server() {
  local name=$1 port=$2 n resp statuses ok bodies body="Hello World"
  [[ $name == uws ]] && body="Hello world!"
  for n in 1 "$PIPELINE"; do
    resp=$(http_get "$port" "$n") || true
    # (a body is not followed by a newline: count matches, not lines)
    statuses=$(grep -o 'HTTP/1\.[01] [0-9][0-9][0-9] ' <<<"$resp" | wc -l)
    ok=$(grep -o 'HTTP/1\.[01] 200 ' <<<"$resp" | wc -l)
    bodies=$(grep -o "$body" <<<"$resp" | wc -l)
    if (( statuses != n || ok != n || bodies != n )); then
      head -n 40 <<<"$resp" >&2
      log "$name: $n request(s) on one connection got $statuses response(s), $ok with 200, $bodies with '$body' (want $n each)"
      if [[ $VERIFY == 1 ]]; then
        die "$name does not answer one 200 'Hello World' per request; its requests/s would be wrong (VERIFY=0 to run anyway)"
      fi
      log "warning: VERIFY=0, going on; $name's numbers count responses, not requests"
      return 0
    fi
  done
}

port_of() { case $1 in talon) echo "$TALON_PORT" ;; uws) echo "$UWS_PORT" ;; *) echo "$BUN_PORT" ;; esac; }

# run_wrk NAME MODE SECONDS TAG -> prints "requests/s requests" (wrk's
# rate and the count behind it)
run_wrk() {
  local name=$1 mode=$2 secs=$3 tag=$4 port out
  port=$(port_of "$name")
  local -a args=(-t1 "-c$CONNECTIONS" "-d${secs}s" --timeout 5s)
  [[ $mode == pipelined ]] && args+=(-s "$BENCH_DIR/pipeline.lua")
  args+=("http://$HOST:$port/")
  [[ $mode == pipelined ]] && args+=(-- "$PIPELINE")
  out="$LOG_DIR/wrk-$mode-$name-$tag.txt"
  taskset -c "$CLIENT_CPU" wrk "${args[@]}" >"$out" 2>&1 \
    || { cat "$out" >&2; die "wrk failed against $name ($mode)"; }
  kill -0 "${PID[$name]}" 2>/dev/null || die "$name died during the $mode run (log: $LOG_DIR/$name.log)"
  local rps n
  rps=$(awk '/^Requests\/sec:/ {printf "%d", $2}' "$out")
  n=$(awk '/ requests in / {print $1; exit}' "$out")
  [[ -n $rps && -n $n ]] || { cat "$out" >&2; die "no Requests/sec in wrk output ($name, $mode)"; }
  if grep -qE 'Non-2xx|Socket errors' "$out"; then
    log "warning: $name $mode $tag: $(grep -E 'Non-2xx|Socket errors' "$out" | tr -s ' ' | tr '\n' ' ')"
  fi
  echo "$rps $n"
}

# ---- main ------------------------------------------------------------------
ensure_wrk
command -v taskset >/dev/null 2>&1 || die "taskset (util-linux) is required"
check_cpus

have() { [[ " $SERVERS " == *" $1 "* ]]; }
if have talon; then build_talon; fi
if have bun; then ensure_bun; fi
if have uws; then
  [[ -x $UWS_BIN ]] || die "no uWebSockets HelloWorld at $UWS_BIN: build it with bench/uws-build.sh (or set UWS_BIN)"
fi

if have talon; then start_server talon "$TALON_PORT" "$TALON_BIN" "$TALON_PORT"; fi
if have bun; then
  log "bun: $BUN ($("$BUN" --version))"
  start_server bun "$BUN_PORT" "$BUN" "$BENCH_DIR/bun/hello.js" "$BUN_PORT"
fi
if have uws; then
  log "uws: $UWS_BIN ($(tr '\n' ' ' <"$(dirname "$UWS_BIN")/VERSION" 2>/dev/null))"
  READY="Listening on port" start_server uws "$UWS_PORT" "$UWS_BIN"
fi

declare -A RES=() PERCPU=() CPUS=()
for mode in $MODES; do
  if (( WARMUP > 0 )); then
    for s in $SERVERS; do
      log "warm-up: $s $mode ${WARMUP}s"
      run_wrk "$s" "$mode" "$WARMUP" warmup >/dev/null
    done
  fi
  for r in $(seq 1 "$ROUNDS"); do
    for s in $SERVERS; do
      load=$(cut -d' ' -f1 /proc/loadavg)
      snap=$(cpu_snap)
      core0=$(core_snap "${CLIENT_CPU%%[,-]*}")
      ticks0=$(cpu_ticks "${PID[$s]}")
      read -r rps nreq < <(run_wrk "$s" "$mode" "$DURATION" "r$r")
      ticks1=$(cpu_ticks "${PID[$s]}")
      ccpu=$(busy_pct "$core0" "$(core_snap "${CLIENT_CPU%%[,-]*}")")
      steal=$(steal_pct "$snap" "$(cpu_snap)")
      # What the server's CPU time bought: wrk's count over the server's
      # user + system seconds in the round (all its threads).
      read -r scpu percpu < <(awk -v n="$nreq" -v t=$((ticks1 - ticks0)) -v hz="$CLK_TCK" -v d="$DURATION" \
        'BEGIN {printf "%.0f %d\n", 100 * t / hz / d, (t > 0 ? n / (t / hz) : 0)}')
      what="$rps req/s, server cpu $scpu%, $percpu req per server cpu-s, client core $ccpu% busy"
      mark=$(steal_mark "$steal")
      log "$mode round $r: $s $what (load $load, steal $steal%${mark:+: discarded})"
      RES[$mode,$s]+="$rps$mark "
      PERCPU[$mode,$s]+="$percpu$mark "
      CPUS[$mode,$s]+="$scpu/$ccpu$mark "
    done
  done
done

# ---- report ----------------------------------------------------------------
# table TITLE ARRAY: per mode and server the rounds, median and mean, and
# the ratio of talon's median to each peer's.
table() {
  local mode s vals kept med peer label
  local -n arr=$2
  printf '%s\n' "$1"
  printf '%-10s %-6s' mode server
  for r in $(seq 1 "$ROUNDS"); do printf ' %10s' "round$r"; done
  printf ' %10s %10s\n' median mean
  for mode in $MODES; do
    declare -A med_of=()
    label=$mode
    [[ $mode == pipelined ]] && label="pipe$PIPELINE"
    for s in $SERVERS; do
      read -ra vals <<<"${arr[$mode,$s]}"
      kept=()
      for v in "${vals[@]}"; do [[ $v == *'*' ]] || kept+=("$v"); done
      printf '%-10s %-6s' "$label" "$s"
      for v in "${vals[@]}"; do printf ' %10s' "$v"; done
      if (( ${#kept[@]} )); then
        med=$(median "${kept[@]}")
        printf ' %10s %10s\n' "$med" "$(mean "${kept[@]}")"
      else
        med=0
        printf ' %10s %10s\n' "-" "-"
      fi
      med_of[$s]=$med
    done
    if have talon; then
      for peer in bun uws; do
        have "$peer" || continue
        printf '%-10s %-6s %s\n' "$label" ratio \
          "$(awk -v t="${med_of[talon]}" -v b="${med_of[$peer]}" -v p="$peer" \
               'BEGIN {if (b > 0 && t > 0) printf "talon/%s = %.2f (medians)", p, t/b; else print "n/a"}')"
      done
    fi
    unset med_of
  done
}

report() {
  local mode s
  printf 'hello world (%s); %s conns, wrk -t1 on cpu %s, server on cpu %s, %s x %ss rounds\n' \
    "$SERVERS" "$CONNECTIONS" "$CLIENT_CPU" "$SERVER_CPU" "$ROUNDS" "$DURATION"
  printf '(* = round discarded: more than %s%% of CPU time stolen)\n' "$STEAL_MAX"
  table "requests/s:" RES
  table "requests per server CPU-second (the figure to compare when wrk's core, not the server's, is the limit):" PERCPU
  printf 'server CPU %% / client (wrk) core busy %%, per round:\n'
  for mode in $MODES; do
    for s in $SERVERS; do printf '%-10s %-6s %s\n' "$mode" "$s" "${CPUS[$mode,$s]}"; done
  done
}

report | tee "$LOG_DIR/summary.txt"
log "logs and wrk output: ${LOG_DIR#"$ROOT/"}/"
