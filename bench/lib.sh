# shellcheck shell=bash
# Shared helpers of bench/http.sh and bench/ws.sh; sourced, not run.
#
# The sourcing script sets, before calling these functions:
#   BENCH_DIR ROOT LOG_DIR HOST SERVER_CPU   (always)
#   SKIP_BUILD TALON_BIN                      (build_talon)
#   BUN (optional: a bun binary to use)       (ensure_bun)
# and defines verify_server NAME PORT, which start_server calls once the
# server listens (it must return 0 or die).
#
# Servers started with start_server are recorded in PID; the sourcing
# script installs `trap cleanup EXIT` so that they are killed on any exit.

log() { printf '[bench] %s\n' "$*" >&2; }
die() { printf '[bench] error: %s\n' "$*" >&2; exit 1; }

# ---- cleanup ---------------------------------------------------------------
declare -A PID=()
cleanup() {
  local rc=$? name pid
  trap - EXIT INT TERM
  for name in "${!PID[@]}"; do
    pid=${PID[$name]}
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid" 2>/dev/null || true
    fi
  done
  for name in "${!PID[@]}"; do
    pid=${PID[$name]}
    for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  exit "$rc"
}

# ---- tools -----------------------------------------------------------------
bun_works() { [[ -n $1 && -x $1 ]] && "$1" --version >/dev/null 2>&1; }

# Prints the path of a working bun binary, installing the npm package `bun`
# into bench/node_modules when none is there. Bun's postinstall moves the
# binary of the platform package (@oven/bun-linux-x64 and kin) into
# node_modules/bun/bin/bun.exe; if it did not run, the binary is still in the
# platform package and is used from there.
find_bun() {
  local c
  local -a cands=(
    "$BENCH_DIR/node_modules/bun/bin/bun.exe"
    "$BENCH_DIR/node_modules/.bin/bun"
  )
  for c in "$BENCH_DIR"/node_modules/@oven/bun-*/bin/bun; do cands+=("$c"); done
  for c in "${cands[@]}"; do
    if bun_works "$c"; then printf '%s\n' "$c"; return 0; fi
  done
  return 1
}

ensure_bun() {
  if [[ -n ${BUN:-} ]]; then
    bun_works "$BUN" || die "BUN=$BUN does not run"
    return
  fi
  if BUN=$(find_bun); then return; fi
  command -v npm >/dev/null 2>&1 || die "bun is missing and npm is not available to install it"
  log "installing bun from npm into bench/node_modules"
  (cd "$BENCH_DIR" && npm install --prefix "$BENCH_DIR" --no-audit --no-fund >"$LOG_DIR/npm.log" 2>&1) \
    || { cat "$LOG_DIR/npm.log" >&2; die "npm install of bun failed"; }
  if BUN=$(find_bun); then return; fi
  # The default x64 build needs AVX2; the baseline build runs without it.
  if [[ $(uname -m) == x86_64 ]] && ! grep -qw avx2 /proc/cpuinfo; then
    log "CPU lacks AVX2; installing @oven/bun-linux-x64-baseline"
    (cd "$BENCH_DIR" && npm install --prefix "$BENCH_DIR" --no-save --no-audit --no-fund \
       @oven/bun-linux-x64-baseline >>"$LOG_DIR/npm.log" 2>&1) || true
    if BUN=$(find_bun); then return; fi
  fi
  cat "$LOG_DIR/npm.log" >&2
  die "no working bun binary under bench/node_modules after npm install"
}

build_talon() {
  if [[ $SKIP_BUILD == 1 ]]; then
    log "SKIP_BUILD=1: using $TALON_BIN as it is"
  else
    log "building talon (Release) in build-bench/"
    (cd "$ROOT" \
      && cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release -DTALON_BUILD_TESTS=OFF \
           -DTALON_BUILD_EXAMPLES=ON >"$LOG_DIR/build.log" 2>&1 \
      && cmake --build build-bench -j2 >>"$LOG_DIR/build.log" 2>&1) \
      || { tail -n 40 "$LOG_DIR/build.log" >&2; die "talon build failed (log: $LOG_DIR/build.log)"; }
  fi
  [[ -x $TALON_BIN ]] || die "$TALON_BIN not found after the build"
}

# ---- servers ---------------------------------------------------------------
port_open() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

# check_cpus: SERVER_CPU and CLIENT_CPU must be CPU lists for taskset -c
# (0, 0,1, 0-3, ...) within this machine's CPUs; warns when they overlap.
# A server with several workers (WORKERS) runs them on SERVER_CPU's CPUs.
check_cpus() {
  local v part a b ncpu
  ncpu=$(nproc)
  for v in SERVER_CPU CLIENT_CPU; do
    [[ ${!v} =~ ^[0-9]+(-[0-9]+)?(,[0-9]+(-[0-9]+)?)*$ ]] \
      || die "$v must be a CPU list such as 0, 0,1 or 0-3 (got '${!v}')"
    IFS=, read -ra parts <<<"${!v}"
    for part in "${parts[@]}"; do
      a=${part%-*} b=${part#*-}
      (( a < ncpu && b < ncpu && a <= b )) || die "$v=${!v} is out of range for $ncpu CPU(s)"
    done
  done
  # Overlapping lists: the numbers then include the client's own load.
  local -A used=()
  for part in $(cpus_of "$SERVER_CPU"); do used[$part]=1; done
  for part in $(cpus_of "$CLIENT_CPU"); do
    [[ -n ${used[$part]:-} ]] && { log "warning: server and client share CPU $part"; break; }
  done
  return 0
}

# cpus_of LIST: the CPU numbers of a taskset list, one per line.
cpus_of() {
  local part a b i
  IFS=, read -ra parts <<<"$1"
  for part in "${parts[@]}"; do
    a=${part%-*} b=${part#*-}
    for ((i = a; i <= b; i++)); do echo "$i"; done
  done
}

# start_server NAME PORT CMD... : runs CMD pinned to SERVER_CPU with PORT and
# HOST in its environment, waits until it prints 'listening on http://' (or
# $READY, for servers that say it otherwise) and
# accepts connections (up to 30 s: a first run of Bun on a fresh machine
# took more than 10), then runs verify_server NAME PORT.
start_server() {
  local name=$1 port=$2; shift 2
  local logf="$LOG_DIR/$name.log"
  port_open "$port" && die "port $port ($name) is already in use; set ${name^^}_PORT"
  log "starting $name on $HOST:$port (cpu $SERVER_CPU${WORKERS:+, WORKERS=$WORKERS}): $*"
  PORT=$port HOST=$HOST taskset -c "$SERVER_CPU" "$@" >"$logf" 2>&1 &
  PID[$name]=$!
  local i ready=0
  for i in $(seq 1 300); do
    if ! kill -0 "${PID[$name]}" 2>/dev/null; then
      cat "$logf" >&2
      die "$name exited during start-up (log: $logf)"
    fi
    if grep -q "${READY:-listening on http://}" "$logf" && port_open "$port"; then ready=1; break; fi
    sleep 0.1
  done
  (( ready )) || { cat "$logf" >&2; die "$name did not report '${READY:-listening on http://}' within 30 s"; }
  verify_server "$name" "$port"
}

# median of integers; values marked * (a discarded round) are left out;
# "-" when no value is left (awk reads "-" as 0: ratios print n/a)
median() { printf '%s\n' "$@" | awk '!/\*$/ && NF' | sort -n | awk '{a[NR]=$1} END {if (NR == 0) print "-"; else if (NR%2) print a[(NR+1)/2]; else printf "%d\n", (a[NR/2]+a[NR/2+1])/2}'; }
mean() { printf '%s\n' "$@" | awk '{s+=$1} END {printf "%d\n", s/NR}'; }

# CPU time (user + system, all threads) a process has used, in clock ticks
# (the command name in /proc/PID/stat may hold spaces: cut after its ')').
cpu_ticks() { awk '{sub(/^.*\) /, ""); print $12 + $13}' "/proc/$1/stat"; }
CLK_TCK=$(getconf CLK_TCK)

# core_snap N: "total idle" jiffies of CPU N so far (/proc/stat); idle
# counts iowait too.
core_snap() { awk -v c="cpu$1" '$1 == c {t = 0; for (i = 2; i <= NF; i++) t += $i; print t, $5 + $6; exit}' /proc/stat; }
# busy_pct "T0 I0" "T1 I1": how busy that CPU was between two snapshots, %.
busy_pct() {
  local t0 i0 t1 i1
  read -r t0 i0 <<<"$1"; read -r t1 i1 <<<"$2"
  awk -v dt=$((t1 - t0)) -v di=$((i1 - i0)) 'BEGIN {printf "%.0f", (dt > 0 ? 100 * (dt - di) / dt : 0)}'
}

# cpu_snap: "total steal" jiffies of all CPUs so far (/proc/stat).
cpu_snap() { awk '/^cpu / {t = 0; for (i = 2; i <= NF; i++) t += $i; print t, $9; exit}' /proc/stat; }
# steal_mark PCT: "*" when a round's steal time PCT (steal_pct) is over
# STEAL_MAX: the round is discarded (its values carry the mark and stay
# out of the medians); nothing otherwise.
steal_mark() { awk -v s="$1" -v m="$STEAL_MAX" 'BEGIN {if (s > m) print "*"}'; }
# steal_pct "T0 S0" "T1 S1": the share of CPU time stolen by the hypervisor
# between two snapshots, in percent with one decimal.
steal_pct() {
  local t0 s0 t1 s1
  read -r t0 s0 <<<"$1"; read -r t1 s1 <<<"$2"
  awk -v dt=$((t1 - t0)) -v ds=$((s1 - s0)) 'BEGIN {printf "%.1f", (dt > 0 ? 100 * ds / dt : 0)}'
}
