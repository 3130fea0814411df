#!/usr/bin/env bash
# WebSocket pub/sub soak test: starts soak_server, runs soak_client against
# it, stops the server with SIGTERM. See tests/soak/README.md.
#
# Usage: tests/soak/run.sh BUILD_DIR
#   (BUILD_DIR is configured with -DTALON_BUILD_TESTS=ON and has the
#   soak_server and soak_client targets built; this script builds nothing.)
# Environment (defaults fit CI, about 1.5 minutes under ASan on 2 cores):
#   CONNS [2000]  SECONDS [60]  TOPICS [50]  PUBRATE [2000 publishes/s]
#   CONNRATE [500 connects/s]  LIFETIME [20 s mean]
#   SLACK_KB, SRCADDRS [the client's defaults, see soak_client.c]
# Exit status 0 only if the client found every message in order and the
# heap back at its baseline, and the server exited 0 without a sanitizer
# report.
set -u

# bash gives SECONDS its own meaning (seconds since the shell started), so
# the caller's value is read from this process's initial environment.
DURATION=$(tr '\0' '\n' </proc/$$/environ | sed -n 's/^SECONDS=//p')
DURATION=${DURATION:-60}

build=${1:?usage: tests/soak/run.sh BUILD_DIR}
server=$build/tests/soak/soak_server
client=$build/tests/soak/soak_client
for b in "$server" "$client"; do
  if [ ! -x "$b" ]; then
    echo "run.sh: $b is missing: cmake --build $build --target soak_server soak_client" >&2
    exit 2
  fi
done

CONNS=${CONNS:-2000}
TOPICS=${TOPICS:-50}
PUBRATE=${PUBRATE:-2000}
CONNRATE=${CONNRATE:-500}
LIFETIME=${LIFETIME:-20}

# One descriptor per connection on each side, plus a few.
hard=$(ulimit -Hn)
[ "$hard" = unlimited ] && hard=1048576
ulimit -n "$hard" || exit 2
if [ $((CONNS + 100)) -gt "$hard" ]; then
  echo "run.sh: CONNS=$CONNS needs more than the descriptor limit $hard" >&2
  exit 2
fi

export ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=1
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

work=$(mktemp -d "${TMPDIR:-/tmp}/talon-soak.XXXXXX")
start=$(date +%s)
"$server" 0 "$TOPICS" >"$work/server.out" 2>"$work/server.err" &
spid=$!

port=
for _ in $(seq 300); do
  port=$(sed -n 's#^listening on http://127\.0\.0\.1:\([0-9]*\)$#\1#p' "$work/server.out")
  [ -n "$port" ] && break
  if ! kill -0 "$spid" 2>/dev/null; then break; fi
  sleep 0.1
done
if [ -z "$port" ]; then
  echo "run.sh: the server did not start" >&2
  cat "$work/server.err" >&2
  kill -KILL "$spid" 2>/dev/null
  exit 1
fi

args=(-c "$CONNS" -t "$DURATION" -k "$TOPICS" -p "$PUBRATE" -r "$CONNRATE"
      -l "$LIFETIME")
[ -n "${SLACK_KB:-}" ] && args+=(-m "$SLACK_KB")
[ -n "${SRCADDRS:-}" ] && args+=(-s "$SRCADDRS")
timeout $((DURATION + 300)) "$client" "${args[@]}" "$port" \
  2> >(tee "$work/client.err" >&2) | tee "$work/client.out"
crc=${PIPESTATUS[0]}

kill -TERM "$spid"
wait "$spid"
src=$?
end=$(date +%s)

fail=0
if [ "$crc" -ne 0 ]; then
  echo "run.sh: FAIL: the client exited $crc" >&2
  fail=1
fi
if [ "$src" -ne 0 ]; then
  echo "run.sh: FAIL: the server exited $src after SIGTERM" >&2
  fail=1
fi
pattern='ERROR: AddressSanitizer|LeakSanitizer|runtime error|UndefinedBehaviorSanitizer'
for f in server.err client.err; do
  if grep -Eq "$pattern" "$work/$f"; then
    echo "run.sh: FAIL: sanitizer report in $f:" >&2
    grep -E -A30 "$pattern" "$work/$f" | head -60 >&2
    fail=1
  fi
done
# The server writes to stderr only its final summary, or errors.
if grep -v '^soak_server: stopped:' "$work/server.err" | grep -q .; then
  echo "run.sh: FAIL: the server reported errors" >&2
  fail=1
fi
echo "run.sh: server: $(grep '^soak_server: stopped:' "$work/server.err")"
if [ "$fail" -eq 0 ]; then
  rm -rf "$work"
  echo "run.sh: PASS in $((end - start)) s"
else
  echo "run.sh: server stderr (last lines):" >&2
  tail -20 "$work/server.err" >&2
  echo "run.sh: FAIL in $((end - start)) s; logs in $work"
fi
exit "$fail"
