#!/usr/bin/env bash
# Builds uWebSockets' own HelloWorld example (examples/HelloWorld.cpp, as
# its authors wrote it: GET /* answers "Hello world!" on port 3000) from
# public sources, for side-by-side runs with talon (bench/http.sh
# SERVERS="talon uws"). Nothing of uWebSockets is kept in this tree: the
# sources come from wherever you cloned them, the build goes to
# build-bench/uws/ (ignored by git).
#
#   git clone https://github.com/uNetworking/uWebSockets
#   git clone https://github.com/uNetworking/uSockets
#   UWS_SRC=uWebSockets USOCKETS_SRC=uSockets bash bench/uws-build.sh
#
# UWS_SRC / USOCKETS_SRC: a work tree, or a bare/mirror git directory
# (then HEAD is exported). USOCKETS_SRC defaults to $UWS_SRC/uSockets (the
# submodule of a recursive clone). The flags are uWebSockets' own build's
# (build.c: -march=native -O3 -flto, C++2b; uSockets with LIBUS_NO_SSL and
# epoll, -O3 -flto). Needs g++ (Debian's g++ 12 works) and zlib's headers.
# Prints the binary's path on success.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
OUT=${OUT:-"$ROOT/build-bench/uws"}

die() { printf '[uws-build] error: %s\n' "$*" >&2; exit 1; }
[[ -n ${UWS_SRC:-} ]] || die "set UWS_SRC to a uWebSockets clone (see the top of this file)"
USOCKETS_SRC=${USOCKETS_SRC:-"$UWS_SRC/uSockets"}
command -v g++ >/dev/null || die "g++ is required (apt-get install g++)"

# Copies tree $1 into $2: a work tree as it is, a git directory's HEAD.
export_tree() {
  local src=$1 dst=$2
  rm -rf "$dst" && mkdir -p "$dst"
  if [[ -d $src/src ]]; then
    cp -r "$src"/. "$dst"/
  elif git --git-dir="$src" rev-parse HEAD >/dev/null 2>&1; then
    git --git-dir="$src" archive HEAD | tar -x -C "$dst"
    git --git-dir="$src" rev-parse HEAD >"$dst/.commit"
  else
    die "$src is neither a source tree nor a git directory"
  fi
}

mkdir -p "$OUT"
export_tree "$UWS_SRC" "$OUT/uWebSockets"
export_tree "$USOCKETS_SRC" "$OUT/uSockets"
[[ -f $OUT/uWebSockets/examples/HelloWorld.cpp ]] || die "no examples/HelloWorld.cpp in $UWS_SRC"
[[ -f $OUT/uSockets/src/libusockets.h ]] || die "no src/libusockets.h in $USOCKETS_SRC"

cd "$OUT/uSockets"
gcc -DLIBUS_NO_SSL -std=c11 -Isrc -O3 -flto -c src/*.c src/eventing/*.c src/crypto/*.c
cd "$OUT/uWebSockets"
g++ -march=native -O3 -flto=auto -std=c++2b -Isrc -I"$OUT/uSockets/src" \
  examples/HelloWorld.cpp "$OUT"/uSockets/*.o -lz -o "$OUT/HelloWorld"
{
  echo "uWebSockets $(cat "$OUT/uWebSockets/.commit" 2>/dev/null || echo '(work tree)')"
  echo "uSockets $(cat "$OUT/uSockets/.commit" 2>/dev/null || echo '(work tree)')"
} >"$OUT/VERSION"
echo "$OUT/HelloWorld"
