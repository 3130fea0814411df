#!/usr/bin/env bash
# Bun's WebSocket chat benchmark (oven-sh/bun, bench/websocket-server), run
# against talon (bench/chat_server.c) and Bun.serve (bench/bunchat/
# chat-server.js), both speaking that benchmark's protocol: every client
# connects with ?name=NAME and joins one room; when CLIENTS_COUNT clients
# are in, the server publishes "ready"; every message M from NAME is
# published to the room as "NAME: M", sender included. The number is
# messages received per second by all clients together.
#
# A third server, "probe" (bench/fanout_probe.c), is the ceiling to hold
# talon against: the same protocol on bare epoll, each loop turn's frames
# built once into one buffer written to every subscriber. With it in
# SERVERS, the report adds talon/probe ratios.
#
# Each server is pinned to one core (SERVER_CPU, default 0) and the client
# to the other (CLIENT_CPU, default 1). Scenarios (SCENARIOS):
#   cNkM   bench/chat_load.c: N clients, each keeping M messages in flight
#          (sent and not yet back from the room); checks every message
#   jsN    bench/bunchat/chat-client.js (our JS reconstruction of Bun's
#          client, run by bun): N clients, batches of BATCH messages each
# For each client count the servers are (re)started with CLIENTS_COUNT=N;
# each scenario runs ROUNDS rounds alternating talon and bun, each round one
# client run with fresh connections: WARMUP seconds after "ready" not
# counted, then DURATION seconds measured. chat_load reads the server's CPU
# time (/proc/PID/stat utime+stime) at the start and end of the window:
# server CPU use and messages per server CPU-second. Prints every round,
# the medians and the talon/bun ratios. Traffic goes to 127.0.0.1 only.
#
# Environment (defaults in brackets):
#   DURATION [10]  measured seconds per round   WARMUP [1]
#   ROUNDS [3]     SCENARIOS ["c16k1 c16k16 c64k1 c256k1 js16"]
#   STEAL_MAX [10] a round during which more than this share (percent) of
#                  the machine's CPU time was stolen by the hypervisor
#                  (/proc/stat) is discarded: printed with a *, left out of
#                  the medians (a server with every round discarded has no
#                  median: "-")
#   SIZE [16]      bytes of each chat_load message
#   BATCH [1600]   messages per client per batch (js scenarios)
#   SERVERS ["talon bun"]  any of talon, bun, probe, talonw
#                  talonw: the same talon server with WORKERS_B workers [2]
#                  (all on SERVER_CPU, port TALONW_PORT [18104]): with
#                  SERVERS="talon talonw" the rounds alternate one worker
#                  and WORKERS_B, and the report prints talonw/talon, what
#                  crossing workers costs
#   TALON_PORT [18101]  BUN_PORT [18102]  PROBE_PORT [18103]
#   SERVER_CPU [0]  CLIENT_CPU [1]
#                  SERVER_CPU / CLIENT_CPU: CPU lists for taskset -c (0, 0,1, 0-3)
#   WORKERS [1]    talon worker threads (0: one per CPU), all on SERVER_CPU
#   DEFLATE [0]    1: publish with compression. Both servers get DEFLATE=1
#                  (permessage-deflate with their shared compressor; talon
#                  compresses a published message once for all subscribers,
#                  Bun is asked to compress every publish), chat_load runs
#                  with -z (offers the extension, inflates and checks every
#                  message; the filler is words, compressible like chat
#                  text) and the report adds the share of messages that came
#                  compressed and their wire/inflated size. Use a SIZE of
#                  at least 128: talon leaves shorter messages uncompressed
#                  (compress_threshold). Not with the probe.
#   SKIP_BUILD [0] 1: do not run cmake (chat_server and chat_load are still
#                  built when missing or older than their source)
#   TALON_BIN      talon chat server [build-bench/bench/chat_server]: port as
#                  first argument and in PORT, CLIENTS_COUNT in the env
#   BUN            path to a bun binary instead of bench/node_modules
#
# Exit status: 0 on success, non-zero if a build, an install, a server start
# or check, or a client run fails (a lost, duplicated, reordered or
# malformed message fails chat_load). Servers are killed on exit or error.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)

DURATION=${DURATION:-10}
WARMUP=${WARMUP:-1}
ROUNDS=${ROUNDS:-3}
SCENARIOS=${SCENARIOS:-c16k1 c16k16 c64k1 c256k1 js16}
SIZE=${SIZE:-16}
BATCH=${BATCH:-1600}
SERVERS=${SERVERS:-talon bun}
TALON_PORT=${TALON_PORT:-18101}
BUN_PORT=${BUN_PORT:-18102}
PROBE_PORT=${PROBE_PORT:-18103}
TALONW_PORT=${TALONW_PORT:-18104}
WORKERS_B=${WORKERS_B:-2}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
SKIP_BUILD=${SKIP_BUILD:-0}
DEFLATE=${DEFLATE:-0}
STEAL_MAX=${STEAL_MAX:-10}
HOST=127.0.0.1 # used by lib.sh

BUILD_DIR="$ROOT/build-bench"
CHAT_SERVER="$BUILD_DIR/bench/chat_server"
TALON_BIN=${TALON_BIN:-$CHAT_SERVER}
CHAT_LOAD="$BUILD_DIR/chat_load"
PROBE_BIN="$BUILD_DIR/fanout_probe"
RESULTS_DIR="$BENCH_DIR/.results"
STAMP=$(date +%Y%m%d-%H%M%S)
LOG_DIR="$RESULTS_DIR/chat-$STAMP"

# log, die, cleanup, ensure_bun, build_talon, port_open, start_server, median
source "$BENCH_DIR/lib.sh"

for v in DURATION WARMUP ROUNDS SIZE BATCH TALON_PORT BUN_PORT PROBE_PORT TALONW_PORT WORKERS_B; do
  [[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a non-negative integer (got '${!v}')"
done
[[ $STEAL_MAX =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "STEAL_MAX must be a number (got '$STEAL_MAX')"
(( DURATION > 0 && ROUNDS > 0 && BATCH > 0 )) || die "DURATION, ROUNDS and BATCH must be positive"
(( SIZE >= 9 )) || die "SIZE must be at least 9 (sequence number and a space)"
for s in $SERVERS; do [[ $s == talon || $s == bun || $s == probe || $s == talonw ]] || die "unknown server '$s' in SERVERS"; done
[[ $DEFLATE == 0 || $DEFLATE == 1 ]] || die "DEFLATE must be 0 or 1 (got '$DEFLATE')"
if [[ $DEFLATE == 1 ]]; then
  [[ " $SERVERS " != *" probe "* ]] || die "DEFLATE=1: the probe does not compress; leave it out of SERVERS"
  [[ " $SCENARIOS" != *" js"* && $SCENARIOS != js* ]] || die "DEFLATE=1: only cNkM scenarios (chat_load -z)"
fi
export DEFLATE # the servers read it
ZOPT=()
[[ $DEFLATE == 1 ]] && ZOPT=(-z)
for sc in $SCENARIOS; do
  [[ $sc =~ ^c([0-9]+)k([0-9]+)$ || $sc =~ ^js([0-9]+)$ ]] \
    || die "bad scenario '$sc' in SCENARIOS (cNkM or jsN)"
  [[ ${BASH_REMATCH[1]} -ge 1 ]] || die "scenario '$sc': at least 1 client"
  [[ $sc != c* || ${BASH_REMATCH[2]} -ge 1 ]] || die "scenario '$sc': at least 1 in flight"
done

mkdir -p "$LOG_DIR"

trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- tools -----------------------------------------------------------------
build_chat_load() {
  if [[ $SKIP_BUILD == 1 && -x $CHAT_LOAD && $CHAT_LOAD -nt $BENCH_DIR/chat_load.c
        && $CHAT_LOAD -nt $BENCH_DIR/wsclient.c && $CHAT_LOAD -nt $BENCH_DIR/wsclient.h ]]; then return; fi
  log "building chat_load: gcc -O2 -o build-bench/chat_load bench/chat_load.c bench/wsclient.c -luv -lz"
  mkdir -p "$BUILD_DIR"
  gcc -O2 -Wall -o "$CHAT_LOAD" "$BENCH_DIR/chat_load.c" "$BENCH_DIR/wsclient.c" -luv -lz >"$LOG_DIR/chat_load-build.log" 2>&1 \
    || { cat "$LOG_DIR/chat_load-build.log" >&2
         die "building chat_load failed (it needs gcc, libuv1-dev and zlib1g-dev)"; }
}

build_probe() {
  if [[ -x $PROBE_BIN && $PROBE_BIN -nt $BENCH_DIR/fanout_probe.c ]]; then return; fi
  log "building fanout_probe: gcc -O2 -o build-bench/fanout_probe bench/fanout_probe.c -lcrypto"
  mkdir -p "$BUILD_DIR"
  gcc -O2 -Wall -o "$PROBE_BIN" "$BENCH_DIR/fanout_probe.c" -lcrypto >"$LOG_DIR/probe-build.log" 2>&1 \
    || { cat "$LOG_DIR/probe-build.log" >&2
         die "building fanout_probe failed (it needs gcc and libssl-dev)"; }
}

# talon in Release (lib.sh's cmake configure and build, which builds the
# chat_server target when the top-level CMakeLists.txt adds bench/); else
# the same program with one gcc line against build-bench/libtalon.so.
build_chat_server() {
  TALON_BIN="$BUILD_DIR/libtalon.so" build_talon
  if [[ $SKIP_BUILD == 1 && -x $CHAT_SERVER && $CHAT_SERVER -nt $BENCH_DIR/chat_server.c ]]; then
    return
  fi
  # (only if the target exists: make exits 0 for an unknown target that
  # names an existing file)
  if [[ $SKIP_BUILD != 1 ]] \
     && cmake --build "$BUILD_DIR" --target help 2>/dev/null | grep -qw chat_server; then
    cmake --build "$BUILD_DIR" --target chat_server >"$LOG_DIR/chat_server-build.log" 2>&1 \
      || { tail -n 40 "$LOG_DIR/chat_server-build.log" >&2; die "building chat_server failed"; }
    [[ -x $CHAT_SERVER ]] || die "the chat_server target did not produce $CHAT_SERVER"
    return
  fi
  log "building chat_server: gcc -O2 bench/chat_server.c -Iinclude -Lbuild-bench -ltalon -luv"
  mkdir -p "$(dirname "$CHAT_SERVER")"
  gcc -O2 -Wall -Wextra -Wno-unused-parameter -I"$ROOT/include" \
      -o "$CHAT_SERVER" "$BENCH_DIR/chat_server.c" \
      -L"$BUILD_DIR" -ltalon -luv -Wl,-rpath,"$BUILD_DIR" >>"$LOG_DIR/chat_server-build.log" 2>&1 \
    || { cat "$LOG_DIR/chat_server-build.log" >&2
         die "building chat_server failed (log: $LOG_DIR/chat_server-build.log)"; }
}

# ---- servers ---------------------------------------------------------------
GROUP_CLIENTS=0 # CLIENTS_COUNT of the servers running now

# Short chat_load runs before measuring: one and four in flight, and
# messages long enough for 16-bit (and, with few clients, 64-bit) lengths.
verify_server() {
  local name=$1 port=$2 n=$GROUP_CLIENTS
  local out="$LOG_DIR/verify-$name-c$n.txt"
  : >"$out"
  local -a a checks=("-k 1" "-k 4 -s 300")
  (( n <= 16 )) && checks+=("-k 1 -s 70000")
  for args in "${checks[@]}"; do
    read -ra a <<<"$args"
    taskset -c "$CLIENT_CPU" "$CHAT_LOAD" -c "$n" "${a[@]}" "${ZOPT[@]}" -w 0 -d 0.3 "$port" >>"$out" 2>&1 \
      || { cat "$out" >&2; die "$name fails the chat check (chat_load -c $n $args -w 0 -d 0.3 $port)"; }
  done
}

port_of() {
  case $1 in talon) echo "$TALON_PORT" ;; bun) echo "$BUN_PORT" ;; talonw) echo "$TALONW_PORT" ;; *) echo "$PROBE_PORT" ;; esac
}

stop_server() {
  local name=$1 pid=${PID[$1]:-}
  [[ -n $pid ]] || return 0
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  unset "PID[$name]"
  mv "$LOG_DIR/$name.log" "$LOG_DIR/$name-c$GROUP_CLIENTS.log" 2>/dev/null || true
}

# start_group N: both servers, fresh, waiting for N clients.
start_group() {
  local s
  for s in $SERVERS; do stop_server "$s"; done
  GROUP_CLIENTS=$1
  export CLIENTS_COUNT=$1
  if have talon; then start_server talon "$TALON_PORT" "$TALON_BIN" "$TALON_PORT"; fi
  if have bun; then start_server bun "$BUN_PORT" "$BUN" "$BENCH_DIR/bunchat/chat-server.js" "$BUN_PORT"; fi
  if have probe; then start_server probe "$PROBE_PORT" "$PROBE_BIN" "$PROBE_PORT"; fi
  if have talonw; then WORKERS=$WORKERS_B start_server talonw "$TALONW_PORT" "$TALON_BIN" "$TALONW_PORT"; fi
}

load1() { cut -d' ' -f1 /proc/loadavg; }

# run_load NAME SCENARIO TAG -> prints
#   "msgs_per_s server_cpu_pct msgs_per_server_cpu_s client_cpu_pct rtt_p99_us
#    compressed_pct wire_ratio"
run_load() {
  local name=$1 sc=$2 tag=$3 port out line pid
  port=$(port_of "$name")
  pid=${PID[$name]}
  out="$LOG_DIR/client-$sc-$name-$tag.txt"
  echo "load average before: $(cat /proc/loadavg)" >"$out"
  if [[ $sc =~ ^c([0-9]+)k([0-9]+)$ ]]; then
    taskset -c "$CLIENT_CPU" "$CHAT_LOAD" -c "${BASH_REMATCH[1]}" -k "${BASH_REMATCH[2]}" \
        -s "$SIZE" "${ZOPT[@]}" -w "$WARMUP" -d "$DURATION" -P "$pid" "$port" >>"$out" 2>&1 \
      || { cat "$out" >&2; die "chat_load failed against $name ($sc, $tag)"; }
    line=$(grep '^RESULT ' "$out" || true)
    [[ -n $line ]] || { cat "$out" >&2; die "no RESULT line from chat_load ($name, $sc)"; }
    grep -q 'warning' "$out" && log "$name $sc $tag: $(grep warning "$out" | tr '\n' ' ')"
    awk '{for (i = 2; i <= NF; i++) {split($i, kv, "="); v[kv[1]] = kv[2]}
          printf "%s %s %s %s %s %s %s\n", v["msgs_per_s"], v["server_cpu_pct"],
                 v["msgs_per_server_cpu_s"], v["client_cpu_pct"], v["rtt_p99_us"],
                 v["compressed_pct"], v["wire_ratio"]}' <<<"$line"
  else
    # The JS client: server CPU over the whole client run (connect and
    # warm-up included), so only its percentage is shown.
    local c0 c1 t0 t1
    c0=$(cpu_ticks "$pid"); t0=$(date +%s%N)
    SERVER="ws://$HOST:$port/" CLIENTS_COUNT="${sc#js}" BATCH=$BATCH DURATION=$DURATION \
      WARMUP=$WARMUP taskset -c "$CLIENT_CPU" "$BUN" "$BENCH_DIR/bunchat/chat-client.js" \
      >>"$out" 2>&1 || { cat "$out" >&2; die "chat-client.js failed against $name ($sc, $tag)"; }
    c1=$(cpu_ticks "$pid"); t1=$(date +%s%N)
    line=$(grep '^RESULT ' "$out" || true)
    [[ -n $line ]] || { cat "$out" >&2; die "no RESULT line from chat-client.js ($name, $sc)"; }
    awk -v ticks=$((c1 - c0)) -v hz="$CLK_TCK" -v ns=$((t1 - t0)) \
        '{for (i = 2; i <= NF; i++) {split($i, kv, "="); v[kv[1]] = kv[2]}
          printf "%s %.1f - - - - -\n", v["msgs_per_s"], ticks * 1e11 / hz / ns}' <<<"$line"
  fi
  kill -0 "$pid" 2>/dev/null || die "$name died during the $sc run (log: $LOG_DIR/$name.log)"
}

# ---- main ------------------------------------------------------------------
command -v taskset >/dev/null 2>&1 || die "taskset (util-linux) is required"
command -v gcc >/dev/null 2>&1 || die "gcc is required to build bench/chat_load.c"
check_cpus

have() { [[ " $SERVERS " == *" $1 "* ]]; }
needs_bun=0
have bun && needs_bun=1
[[ " $SCENARIOS" == *" js"* ]] && needs_bun=1
build_chat_load
have probe && build_probe
if have talon || have talonw; then
  if [[ $TALON_BIN == "$CHAT_SERVER" ]]; then
    build_chat_server
  fi
  [[ -x $TALON_BIN ]] || die "TALON_BIN=$TALON_BIN not found"
fi
if (( needs_bun )); then ensure_bun; log "bun: $BUN ($("$BUN" --version))"; fi

LOAD_START=$(cat /proc/loadavg)
log "load average at start: $LOAD_START"

declare -A MPS=() SCPU=() MPC=() CCPU=() P99=() ZPCT=() WIRE=() LOADS=() STEALS=()
# Scenarios grouped by client count, in the order of their first mention.
declare -a counts=()
for sc in $SCENARIOS; do
  n=${sc#js}; n=${n#c}; n=${n%%k*}
  [[ " ${counts[*]} " == *" $n "* ]] || counts+=("$n")
done
for n in "${counts[@]}"; do
  start_group "$n"
  for sc in $SCENARIOS; do
    m=${sc#js}; m=${m#c}; m=${m%%k*}
    [[ $m == "$n" ]] || continue
    for r in $(seq 1 "$ROUNDS"); do
      for s in $SERVERS; do
        l=$(load1)
        snap0=$(cpu_snap)
        res=$(run_load "$s" "$sc" "r$r") || exit 1
        st=$(steal_pct "$snap0" "$(cpu_snap)")
        read -r mps scpu mpc ccpu p99 zpct wire <<<"$res"
        ztxt=""
        [[ $DEFLATE == 1 ]] && ztxt=", ${zpct}% compressed, wire/inflated $wire"
        m=$(steal_mark "$st")
        log "$sc round $r: $s $mps msgs/s, server cpu ${scpu}%, $mpc msgs per server CPU-s, client cpu ${ccpu}%, rtt p99 ${p99} us$ztxt (load $l, steal $st%${m:+: discarded})"
        MPS[$sc,$s]+="$mps$m "; SCPU[$sc,$s]+="$scpu$m "; MPC[$sc,$s]+="$mpc$m "
        CCPU[$sc,$s]+="$ccpu$m "; P99[$sc,$s]+="$p99$m "; ZPCT[$sc,$s]+="$zpct$m "
        WIRE[$sc,$s]+="$wire$m "; LOADS[$sc]+="$l "
        STEALS[$sc]+="$st$m "
      done
    done
  done
done
for s in $SERVERS; do stop_server "$s"; done
LOAD_END=$(cat /proc/loadavg)

# ---- report ----------------------------------------------------------------
# median of numbers that may be "-" or decimals, leaving out "-" and the
# values of discarded rounds (marked *)
medf() {
  printf '%s\n' "$@" | { grep -v -e '^-$' -e '\*$' || true; } | sort -g \
    | awk '{a[NR]=$1} END {if (!NR) print "-"; else if (NR%2) print a[(NR+1)/2];
                           else printf "%.1f\n", (a[NR/2]+a[NR/2+1])/2}'
}

report() {
  local sc s vals med metric
  printf 'talon vs Bun.serve, Bun'"'"'s chat benchmark protocol (publish "NAME: msg" to all, sender included)%s\n' \
    "$([[ $DEFLATE == 1 ]] && echo ", permessage-deflate (publish compressed), $SIZE-byte messages")"
  printf 'client on cpu %s, servers on cpu %s, %s rounds x %ss (+%ss warm-up), bun %s\n' \
    "$CLIENT_CPU" "$SERVER_CPU" "$ROUNDS" "$DURATION" "$WARMUP" "$("${BUN:-false}" --version 2>/dev/null || echo -)"
  printf 'load average: start %s; end %s\n' "$LOAD_START" "$LOAD_END"
  printf '(* = round discarded: more than %s%% of CPU time stolen)\n' "$STEAL_MAX"
  printf '%-8s %-6s %-10s' scenario server metric
  for r in $(seq 1 "$ROUNDS"); do printf ' %11s' "round$r"; done
  printf ' %11s\n' median
  for sc in $SCENARIOS; do
    declare -A med_mps=() med_mpc=()
    for s in $SERVERS; do
      local -a metrics=(msgs/s srv_cpu% msgs/cpu-s cli_cpu% rtt_p99us)
      [[ $DEFLATE == 1 ]] && metrics+=(compr% wire/raw)
      for metric in "${metrics[@]}"; do
        case $metric in
          msgs/s)     read -ra vals <<<"${MPS[$sc,$s]}" ;;
          srv_cpu%)   read -ra vals <<<"${SCPU[$sc,$s]}" ;;
          msgs/cpu-s) read -ra vals <<<"${MPC[$sc,$s]}" ;;
          cli_cpu%)   read -ra vals <<<"${CCPU[$sc,$s]}" ;;
          rtt_p99us)  read -ra vals <<<"${P99[$sc,$s]}" ;;
          compr%)     read -ra vals <<<"${ZPCT[$sc,$s]}" ;;
          wire/raw)   read -ra vals <<<"${WIRE[$sc,$s]}" ;;
        esac
        [[ $sc == js* && $metric != msgs/s && $metric != srv_cpu% ]] && continue
        printf '%-8s %-6s %-10s' "$sc" "$s" "$metric"
        for v in "${vals[@]}"; do printf ' %11s' "$v"; done
        med=$(medf "${vals[@]}")
        printf ' %11s\n' "$med"
        [[ $metric == msgs/s ]] && med_mps[$s]=$med
        [[ $metric == msgs/cpu-s ]] && med_mpc[$s]=$med
      done
    done
    # talon/peer; for talonw the other way round: talonw/talon (1 - the
    # cost of crossing workers)
    local a b
    for peer in bun probe talonw; do
      have talon && have "$peer" || continue
      a=talon b=$peer
      [[ $peer == talonw ]] && a=talonw b=talon
      printf '%-8s %-6s %s\n' "$sc" ratio \
        "$(awk -v t="${med_mps[$a]}" -v p="${med_mps[$b]}" -v tc="${med_mpc[$a]:--}" \
               -v pc="${med_mpc[$b]:--}" -v js="${sc%%[0-9]*}" -v a="$a" -v b="$b" \
             'BEGIN {
                if (p > 0 && t != "-") printf "%s/%s msgs/s = %.2f", a, b, t/p; else printf "msgs/s n/a"
                if (js != "js" && pc > 0 && tc != "-") printf ", msgs per server CPU-s = %.2f", tc/pc
                printf " (medians)"
              }')"
    done
    printf '%-8s %-6s 1-min load average before each run (%s alternating): %s\n' "$sc" load "${SERVERS// /, }" "${LOADS[$sc]}"
    printf '%-8s %-6s steal time during each run, %% of all CPU time (/proc/stat): %s\n' "$sc" steal "${STEALS[$sc]}"
    unset med_mps med_mpc
  done
}

report | tee "$LOG_DIR/summary.txt"
log "logs and client output: ${LOG_DIR#"$ROOT/"}/"
