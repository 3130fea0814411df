#!/usr/bin/env bash
# permessage-deflate benchmark: talon's WebSocket echo in each compression
# mode (bench/deflate_server.c) against Bun.serve with
# `perMessageDeflate: true` (bench/bun/deflate.js), driven by the same
# client, bench/ws_load_deflate.c, which offers the extension like a browser
# ("permessage-deflate; client_max_window_bits"), compresses what it sends,
# inflates and checks every echo.
#
# Servers (SERVERS), each pinned to SERVER_CPU (default 0), the client to
# CLIENT_CPU (default 1):
#   off              talon, TL_NO_COMPRESSION (declines; plain frames)
#   shared           talon, TL_SHARED_COMPRESSOR | TL_SHARED_DECOMPRESSOR
#   dedicated        talon, TL_DEDICATED_COMPRESSOR | TL_DEDICATED_DECOMPRESSOR
#   dedicated-small  the same, compress_window_bits 9, compress_mem_level 1
#   bun              Bun, perMessageDeflate: true, ws.send(msg, true)
#   bun-dedicated    Bun, perMessageDeflate: { compress: "dedicated",
#                    decompress: "dedicated" } (a compressor per socket, the
#                    window kept), ws.send(msg, true): the peer of talon's
#                    dedicated rows when it runs
#   bun-nocompress   Bun, perMessageDeflate: true, ws.send(msg): Bun's
#                    default, the echo goes out uncompressed
# talon echoes with tl_ws_send() (compressed when negotiated and >= 128 B).
#
# 1. Throughput: for each message size (SIZES) and messages in flight per
#    connection (INFLIGHTS), ROUNDS rounds alternating all servers; a round
#    is one ws_load_deflate run, CONNECTIONS connections, WARMUP s not
#    counted, DURATION s measured. Messages are JSON-like chat text (the
#    same seeded pool for every server). Reported per server: msgs/s, p50
#    and p99 round trip, echoes per second of server CPU time, the echo's
#    wire bytes per message byte, and the medians' ratios to `bun`.
# 2. Memory (MEM=1): for each server and MEM_SIZES, a fresh server process,
#    a short warm-up run, then MEM_CONNS idle connections (extension
#    negotiated), then one message on each (so per-connection zlib streams
#    exist): the server's VmRSS growth per connection after opening and
#    after the message, and what is left after closing them all.
# Traffic goes to 127.0.0.1 only.
#
# Environment (defaults in brackets):
#   DURATION [10]  WARMUP [1]  ROUNDS [3]  CONNECTIONS [64]
#   SIZES ["200 4096"]  INFLIGHTS ["1 16"]
#   SERVERS ["off shared dedicated dedicated-small bun bun-dedicated bun-nocompress"]
#   COMPRESS_LEVEL [1]  zlib level of talon's dedicated compressors
#   STEAL_MAX [10]  a round during which more than this share (percent) of
#                  the machine's CPU time was stolen (/proc/stat) is
#                  discarded: printed with a *, left out of the medians
#   OFFER [browser]   browser: "permessage-deflate; client_max_window_bits";
#                     cnct: adds client_no_context_takeover
#   MEM [1]  MEM_CONNS [2000]  MEM_SIZES ["200 4096"]
#   CTX_BYTES [0]  per-socket context of talon's server (tl_app_ws data_size)
#   BASE_PORT [18301]  (servers use BASE_PORT, BASE_PORT+1, ...)
#   SERVER_CPU [0]  CLIENT_CPU [1]
#   SKIP_BUILD [0]  1: do not run cmake (deflate_server and ws_load_deflate
#                  are still compiled: one gcc line each, against build-bench/)
#   BUN            path to a bun binary to use instead of bench/node_modules
#
# Exit status: 0 on success, non-zero if a build, an install, a server
# start, a check or a ws_load_deflate run fails (a wrong, missing or extra
# echo, a protocol error, an unexpected extension agreement, a refused or
# dropped connection, a server that died). Servers are killed on exit, error
# or interrupt.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)

DURATION=${DURATION:-10}
WARMUP=${WARMUP:-1}
ROUNDS=${ROUNDS:-3}
CONNECTIONS=${CONNECTIONS:-64}
SIZES=${SIZES:-200 4096}
INFLIGHTS=${INFLIGHTS:-1 16}
SERVERS=${SERVERS:-off shared dedicated dedicated-small bun bun-dedicated bun-nocompress}
OFFER=${OFFER:-browser}
MEM=${MEM:-1}
MEM_CONNS=${MEM_CONNS:-2000}
MEM_SIZES=${MEM_SIZES:-200 4096}
BASE_PORT=${BASE_PORT:-18301}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
SKIP_BUILD=${SKIP_BUILD:-0}
STEAL_MAX=${STEAL_MAX:-10}
HOST=127.0.0.1 # used by lib.sh

BUILD_DIR="$ROOT/build-bench"
DEFLATE_SERVER="$BUILD_DIR/deflate_server"
LOAD="$BUILD_DIR/ws_load_deflate"
RESULTS_DIR="$BENCH_DIR/.results"
STAMP=$(date +%Y%m%d-%H%M%S)
LOG_DIR="$RESULTS_DIR/deflate-$STAMP"

# log, die, cleanup, ensure_bun, build_talon, port_open, start_server, median
source "$BENCH_DIR/lib.sh"

for v in DURATION WARMUP ROUNDS CONNECTIONS MEM MEM_CONNS BASE_PORT; do
  [[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a non-negative integer (got '${!v}')"
done
(( DURATION > 0 && ROUNDS > 0 && CONNECTIONS > 0 && MEM_CONNS > 0 )) \
  || die "DURATION, ROUNDS, CONNECTIONS and MEM_CONNS must be positive"
[[ $STEAL_MAX =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "STEAL_MAX must be a number (got '$STEAL_MAX')"
for n in $SIZES $INFLIGHTS $MEM_SIZES; do
  [[ $n =~ ^[1-9][0-9]*$ ]] || die "SIZES, INFLIGHTS and MEM_SIZES take positive integers (got '$n')"
done
for s in $SERVERS; do
  case $s in off|shared|dedicated|dedicated-small|bun|bun-dedicated|bun-nocompress) ;;
    *) die "unknown server '$s' in SERVERS" ;; esac
done
case $OFFER in
  browser) OFFER_ARGS=() ;;
  cnct) OFFER_ARGS=(-n) ;;
  *) die "OFFER must be browser or cnct" ;;
esac

mkdir -p "$LOG_DIR"

trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

is_bun() { [[ $1 == bun* ]]; }
have() { [[ " $SERVERS " == *" $1 "* ]]; }
have_bun() { have bun || have bun-dedicated || have bun-nocompress; }
have_talon() { local s; for s in $SERVERS; do is_bun "$s" || return 0; done; return 1; }

# ---- builds ----------------------------------------------------------------
build_load() {
  log "building ws_load_deflate: gcc -O2 -o build-bench/ws_load_deflate bench/ws_load_deflate.c bench/wsclient.c -luv -lz"
  mkdir -p "$BUILD_DIR"
  gcc -O2 -Wall -o "$LOAD" "$BENCH_DIR/ws_load_deflate.c" "$BENCH_DIR/wsclient.c" -luv -lz >"$LOG_DIR/ws_load_deflate-build.log" 2>&1 \
    || { cat "$LOG_DIR/ws_load_deflate-build.log" >&2
         die "building ws_load_deflate failed (it needs gcc, libuv1-dev and zlib1g-dev)"; }
}

# talon in Release (lib.sh's cmake configure and build), then the server
# against build-bench/libtalon.so, found at run time through the rpath.
build_server() {
  TALON_BIN="$BUILD_DIR/libtalon.so" build_talon
  log "building deflate_server: gcc -O2 bench/deflate_server.c -Iinclude -Lbuild-bench -ltalon"
  gcc -O2 -Wall -Wextra -Wno-unused-parameter -I"$ROOT/include" \
      -o "$DEFLATE_SERVER" "$BENCH_DIR/deflate_server.c" \
      -L"$BUILD_DIR" -ltalon -Wl,-rpath,"$BUILD_DIR" >"$LOG_DIR/deflate_server-build.log" 2>&1 \
    || { cat "$LOG_DIR/deflate_server-build.log" >&2
         die "building deflate_server failed (log: $LOG_DIR/deflate_server-build.log)"; }
}

# ---- servers ---------------------------------------------------------------
# The extension agreement each server must reach with our offer, as the
# client prints it (spaces removed): a regular expression.
expected_ext() {
  case $1 in
    off) echo '^none$' ;;
    *) echo '^permessage-deflate(;.*)?$' ;;
  esac
}

field() { # field NAME LINE
  awk -v k="$1" '{for (i = 2; i <= NF; i++) {n = index($i, "="); if (substr($i, 1, n - 1) == k) print substr($i, n + 1)}}' <<<"$2"
}

# Short runs before measuring: several in flight, a message over 64 KiB,
# a 1-byte message (under talon's threshold: echoed uncompressed). Checks
# every echo (ws_load_deflate) and the extension agreement.
verify_server() {
  local name=$1 port=$2 line ext
  local out="$LOG_DIR/verify-$name.txt"
  : >"$out"
  local -a a
  for args in "-c 4 -k 8 -s 200" "-c 2 -k 4 -s 70000" "-c 2 -k 2 -s 1"; do
    read -ra a <<<"$args"
    taskset -c "$CLIENT_CPU" "$LOAD" "${a[@]}" "${OFFER_ARGS[@]}" -w 0 -d 0.3 "$port" >>"$out" 2>&1 \
      || { cat "$out" >&2; die "$name fails the echo check (ws_load_deflate $args -w 0 -d 0.3 $port)"; }
  done
  line=$(grep '^RESULT ' "$out" | head -n 1)
  ext=$(field ext "$line")
  [[ $ext =~ $(expected_ext "$name") ]] || die "$name agreed to '$ext' (expected $(expected_ext "$name"))"
  EXT[$name]=$ext
  log "$name: agreed $ext; 200-byte echoes compressed: $(field rx_compressed "$line")"
}

declare -A PORT_OF=() EXT=()
i=0
for s in $SERVERS; do PORT_OF[$s]=$((BASE_PORT + i)); i=$((i + 1)); done

launch() { # launch NAME PORT
  local name=$1 port=$2
  case $name in
    bun) BUN_COMPRESS=1 start_server "$name" "$port" "$BUN" "$BENCH_DIR/bun/deflate.js" "$port" ;;
    bun-dedicated) BUN_COMPRESS=1 BUN_DEFLATE=dedicated start_server "$name" "$port" "$BUN" "$BENCH_DIR/bun/deflate.js" "$port" ;;
    bun-nocompress) BUN_COMPRESS=0 start_server "$name" "$port" "$BUN" "$BENCH_DIR/bun/deflate.js" "$port" ;;
    *) start_server "$name" "$port" "$DEFLATE_SERVER" "$port" "$name" ;;
  esac
}

stop_server() {
  local name=$1 pid=${PID[$1]:-}
  [[ -n $pid ]] || return 0
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  unset 'PID[$name]'
}


# run_load NAME SIZE INFLIGHT TAG -> prints
#   "msgs_per_s p50_us p99_us msgs_per_cpu_s rx_ratio client_cpu"
run_load() {
  local name=$1 size=$2 k=$3 tag=$4 port out line c0 c1
  port=${PORT_OF[$name]}
  out="$LOG_DIR/load-s$size-k$k-$name-$tag.txt"
  c0=$(cpu_ticks "${PID[$name]}")
  taskset -c "$CLIENT_CPU" "$LOAD" -c "$CONNECTIONS" -k "$k" -s "$size" "${OFFER_ARGS[@]}" \
      -w "$WARMUP" -d "$DURATION" "$port" >"$out" 2>&1 \
    || { cat "$out" >&2; die "ws_load_deflate failed against $name (size $size, k $k, $tag)"; }
  kill -0 "${PID[$name]}" 2>/dev/null || die "$name died during a run (log: $LOG_DIR/$name.log)"
  c1=$(cpu_ticks "${PID[$name]}")
  line=$(grep '^RESULT ' "$out" || true)
  [[ -n $line ]] || { cat "$out" >&2; die "no RESULT line in ws_load_deflate output ($name)"; }
  [[ $(field ext "$line") == "${EXT[$name]}" ]] \
    || die "$name agreed to '$(field ext "$line")', in the check '${EXT[$name]}'"
  grep -q 'warning' "$out" && log "$name s$size k$k $tag: $(grep warning "$out" | tr '\n' ' ')"
  awk -v ticks=$((c1 - c0)) -v hz="$CLK_TCK" \
      '{for (i = 2; i <= NF; i++) {n = index($i, "="); v[substr($i, 1, n - 1)] = substr($i, n + 1)}
        printf "%s %s %s %d %s %s\n", v["msgs_per_s"], v["p50_us"], v["p99_us"],
               (ticks > 0 ? v["all_msgs"] * hz / ticks : 0), v["rx_ratio"], v["client_cpu"]}' <<<"$line"
}

# ---- main ------------------------------------------------------------------
command -v taskset >/dev/null 2>&1 || die "taskset (util-linux) is required"
command -v gcc >/dev/null 2>&1 || die "gcc is required"
check_cpus
# Enough descriptors for MEM_CONNS connections on both ends.
need_fds=$((MEM_CONNS + 256))
if (( $(ulimit -n) < need_fds )); then
  ulimit -n "$need_fds" 2>/dev/null || die "ulimit -n is $(ulimit -n); MEM_CONNS=$MEM_CONNS needs $need_fds"
fi
log "machine: $(nproc) CPUs, $(uptime | sed 's/.*load average/load average/')"

build_load
if have_talon; then build_server; fi
if have_bun; then ensure_bun; log "bun: $BUN ($("$BUN" --version))"; fi

for s in $SERVERS; do launch "$s" "${PORT_OF[$s]}"; done

declare -A MPS=() P50=() P99=() MPC=() RXR=() CCPU=()
for size in $SIZES; do
  for k in $INFLIGHTS; do
    sc="s$size-k$k"
    for r in $(seq 1 "$ROUNDS"); do
      for s in $SERVERS; do
        l=$(cut -d' ' -f1 /proc/loadavg)
        snap=$(cpu_snap)
        read -r mps p50 p99 mpc rxr ccpu <<<"$(run_load "$s" "$size" "$k" "r$r")"
        st=$(steal_pct "$snap" "$(cpu_snap)")
        m=$(steal_mark "$st")
        log "c$CONNECTIONS-k$k-${size}B round $r: $s $mps msgs/s, p50 $p50 us, p99 $p99 us, $mpc msgs per server CPU-s, echo wire/msg $rxr, client cpu $ccpu (load $l, steal $st%${m:+: discarded})"
        MPS[$sc,$s]+="$mps$m "
        P50[$sc,$s]+="${p50%.*}$m "
        P99[$sc,$s]+="${p99%.*}$m "
        MPC[$sc,$s]+="$mpc$m "
        RXR[$sc,$s]=$rxr
        CCPU[$sc,$s]+="$ccpu$m "
      done
    done
  done
done
log "machine after the throughput runs: $(uptime | sed 's/.*load average/load average/')"

# ---- memory ----------------------------------------------------------------
declare -A MEMLINE=()
if (( MEM )); then
  for s in $SERVERS; do stop_server "$s"; done
  for size in $MEM_SIZES; do
    for s in $SERVERS; do
      name="mem-$s"
      # a fresh process: what earlier runs freed would hide the growth
      launch_as() {
        case $s in
          bun) BUN_COMPRESS=1 start_server "$name" "${PORT_OF[$s]}" "$BUN" "$BENCH_DIR/bun/deflate.js" "${PORT_OF[$s]}" ;;
          bun-dedicated) BUN_COMPRESS=1 BUN_DEFLATE=dedicated start_server "$name" "${PORT_OF[$s]}" "$BUN" "$BENCH_DIR/bun/deflate.js" "${PORT_OF[$s]}" ;;
          bun-nocompress) BUN_COMPRESS=0 start_server "$name" "${PORT_OF[$s]}" "$BUN" "$BENCH_DIR/bun/deflate.js" "${PORT_OF[$s]}" ;;
          *) start_server "$name" "${PORT_OF[$s]}" "$DEFLATE_SERVER" "${PORT_OF[$s]}" "$s" ;;
        esac
      }
      verify_server() { :; } # the warm-up run below checks the echoes
      launch_as
      out="$LOG_DIR/mem-s$size-$s.txt"
      # warm-up: lazy start-up costs (shared zlib streams, Bun's JIT) go
      # into the base, not into the per-connection figure
      taskset -c "$CLIENT_CPU" "$LOAD" -c 4 -k 1 -s "$size" "${OFFER_ARGS[@]}" -w 0 -d 0.3 \
          "${PORT_OF[$s]}" >"$out" 2>&1 \
        || { cat "$out" >&2; die "warm-up before the memory run failed against $s"; }
      taskset -c "$CLIENT_CPU" "$LOAD" -M "${PID[$name]}" -c "$MEM_CONNS" -s "$size" "${OFFER_ARGS[@]}" \
          "${PORT_OF[$s]}" >>"$out" 2>&1 \
        || { cat "$out" >&2; die "memory run failed against $s (size $size)"; }
      kill -0 "${PID[$name]}" 2>/dev/null || die "$s died during the memory run"
      MEMLINE[$size,$s]=$(grep '^MEM ' "$out")
      log "memory $s ${size}B: ${MEMLINE[$size,$s]}"
      stop_server "$name"
    done
  done
fi

# ---- report ----------------------------------------------------------------
# peer_of SERVER: the Bun row a row's ratios are taken against: talon's
# dedicated modes against bun-dedicated when it runs, everything else
# against bun; empty when that row is not in SERVERS.
peer_of() {
  if [[ $1 == dedicated* ]] && have bun-dedicated; then echo bun-dedicated
  elif have bun; then echo bun
  fi
}

report() {
  local size k sc s vals med line peer
  printf 'permessage-deflate echo: talon modes vs Bun.serve (perMessageDeflate: true); offer: %s\n' \
    "$([[ $OFFER == cnct ]] && echo 'permessage-deflate; client_no_context_takeover; client_max_window_bits' \
                            || echo 'permessage-deflate; client_max_window_bits')"
  printf 'ws_load_deflate on cpu %s, servers on cpu %s, %s conns, %s x %ss rounds (+%ss warm-up each)\n' \
    "$CLIENT_CPU" "$SERVER_CPU" "$CONNECTIONS" "$ROUNDS" "$DURATION" "$WARMUP"
  printf '(* = round discarded: more than %s%% of CPU time stolen)\n' "$STEAL_MAX"
  printf 'agreed:\n'
  for s in $SERVERS; do printf '  %-16s %s\n' "$s" "${EXT[$s]:-?}"; done
  printf '\n%-14s %-16s' scenario server
  for r in $(seq 1 "$ROUNDS"); do printf ' %8s' "msgs/s$r"; done
  printf ' %8s %8s %8s %9s %7s %7s %7s %6s\n' median p50_us p99_us msgs/cpu vs_bun cpu_vs wire cl_cpu
  for size in $SIZES; do
    for k in $INFLIGHTS; do
      sc="s$size-k$k"
      declare -A med_mps=() med_mpc=()
      for s in $SERVERS; do
        read -ra vals <<<"${MPS[$sc,$s]}"; med_mps[$s]=$(median "${vals[@]}")
        read -ra vals <<<"${MPC[$sc,$s]}"; med_mpc[$s]=$(median "${vals[@]}")
      done
      for s in $SERVERS; do
        printf '%-14s %-16s' "c$CONNECTIONS-k$k-${size}B" "$s"
        read -ra vals <<<"${MPS[$sc,$s]}"
        for v in "${vals[@]}"; do printf ' %8s' "$v"; done
        printf ' %8s' "${med_mps[$s]}"
        read -ra vals <<<"${P50[$sc,$s]}"; printf ' %8s' "$(median "${vals[@]}")"
        read -ra vals <<<"${P99[$sc,$s]}"; printf ' %8s' "$(median "${vals[@]}")"
        printf ' %9s' "${med_mpc[$s]}"
        peer=$(peer_of "$s")
        if [[ -n $peer ]]; then
          awk -v t="${med_mps[$s]}" -v b="${med_mps[$peer]}" -v tc="${med_mpc[$s]}" -v bc="${med_mpc[$peer]}" \
            'BEGIN {printf " %7s %7s", (b > 0 ? sprintf("%.2f", t / b) : "n/a"), (bc > 0 ? sprintf("%.2f", tc / bc) : "n/a")}'
        else
          printf ' %7s %7s' - -
        fi
        read -ra vals <<<"${CCPU[$sc,$s]}"
        printf ' %7s %6s\n' "${RXR[$sc,$s]}" "$(printf '%s\n' "${vals[@]}" | awk '!/\*$/' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')"
      done
      unset med_mps med_mpc
    done
  done
  printf '(median of the rounds; p50/p99: medians of the rounds, us; msgs/cpu: echoes per second of server CPU time;\n'
  printf ' vs_bun, cpu_vs: msgs/s and msgs/cpu over bun'"'"'s (the dedicated rows over bun-dedicated'"'"'s when it ran);\n'
  printf ' wire: echo payload bytes on the wire per message byte;\n'
  printf ' cl_cpu: the client'"'"'s CPU use, near 1.00 = the client was the limit)\n'
  if (( MEM )); then
    printf '\nmemory: VmRSS of a fresh server, %s connections, one message each after they are idle\n' "$MEM_CONNS"
    printf '%-7s %-16s %10s %11s %12s %12s %12s\n' size server base_KiB idle_KiB/c after_msg/c msg_total_MiB closed_KiB
    for size in $MEM_SIZES; do
      for s in $SERVERS; do
        line=${MEMLINE[$size,$s]:-}
        [[ -n $line ]] || continue
        awk -v size="$size" -v s="$s" \
          '{for (i = 2; i <= NF; i++) {n = index($i, "="); v[substr($i, 1, n - 1)] = substr($i, n + 1)}
            printf "%-7s %-16s %10d %11.1f %12.1f %12.1f %+12d\n", size "B", s, v["rss_base_kib"],
                   v["open_per_conn_kib"], v["msg_per_conn_kib"], (v["rss_msg_kib"] - v["rss_base_kib"]) / 1024,
                   v["rss_closed_kib"] - v["rss_base_kib"]}' <<<"$line"
      done
    done
    printf '(idle_KiB/c, after_msg/c: VmRSS growth over the base per connection; closed_KiB: growth left after all closed)\n'
  fi
}

report | tee "$LOG_DIR/summary.txt"
log "logs and ws_load_deflate output: ${LOG_DIR#"$ROOT/"}/"
