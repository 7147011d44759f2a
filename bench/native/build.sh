#!/usr/bin/env bash
# Builds the benchmarks' native tools into bench/native/build/: nfsbench (the
# NFSv3 benchmark client, on libnfs) and relay (a byte-forwarding TCP hop, the
# chain suite's floor), each only if missing or older than its source (cheap
# to call from set-up scripts). Needs gcc and libnfs-dev (Debian: apt-get
# install gcc libnfs-dev).
set -euo pipefail
cd "$(dirname "$0")"
# This script, from here: a binary older than it is rebuilt ($0 may be a path relative to where it was run from).
self=$(basename "$0")

cc=${CC:-gcc}
mkdir -p build

# build NAME FLAGS...: compile NAME.c with FLAGS and the libraries in $libs into build/NAME when out of date.
build() {
  local name=$1 src=$1.c out=build/$1
  shift
  if [[ -x $out && ! $src -nt $out && ! $self -nt $out ]]; then
    return 0
  fi
  if ! command -v "$cc" >/dev/null 2>&1; then
    echo "build.sh: C compiler '$cc' not found (Debian: apt-get install gcc)" >&2
    exit 1
  fi
  # Build under a private name and rename, so concurrent callers never run a half-written binary.
  local tmp
  tmp=$(mktemp "build/.$name.XXXXXX")
  trap 'rm -f "$tmp"' EXIT
  "$cc" -O2 -Wall "$@" -o "$tmp" "$src" ${libs[@]+"${libs[@]}"}
  chmod 755 "$tmp"
  mv -f "$tmp" "$out"
  trap - EXIT
  echo "build.sh: built $(pwd)/$out" >&2
}

if [[ ! -f /usr/include/nfsc/libnfs-raw.h ]] && ! pkg-config --exists libnfs 2>/dev/null; then
  echo "build.sh: libnfs development files not found (Debian: apt-get install libnfs-dev)" >&2
  exit 1
fi
cflags=() libs=(-lnfs)
if pkg-config --exists libnfs 2>/dev/null; then
  read -r -a cflags <<<"$(pkg-config --cflags libnfs)"
  read -r -a libs <<<"$(pkg-config --libs libnfs)"
fi
build nfsbench ${cflags[@]+"${cflags[@]}"}

libs=()
build relay -pthread
