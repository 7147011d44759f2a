#!/usr/bin/env bash
# Builds the native NFSv3 benchmark client into bench/native/build/nfsbench,
# only if the binary is missing or older than nfsbench.c (cheap to call from
# set-up scripts). Needs gcc and libnfs-dev (Debian: apt-get install libnfs-dev).
set -euo pipefail
cd "$(dirname "$0")"

src=nfsbench.c
out=build/nfsbench

if [[ -x $out && ! $src -nt $out && ! $0 -nt $out ]]; then
  exit 0
fi

cc=${CC:-gcc}
if ! command -v "$cc" >/dev/null 2>&1; then
  echo "build.sh: C compiler '$cc' not found (Debian: apt-get install gcc)" >&2
  exit 1
fi
if [[ ! -f /usr/include/nfsc/libnfs-raw.h ]] && ! pkg-config --exists libnfs 2>/dev/null; then
  echo "build.sh: libnfs development files not found (Debian: apt-get install libnfs-dev)" >&2
  exit 1
fi

cflags=() libs=(-lnfs)
if pkg-config --exists libnfs 2>/dev/null; then
  read -r -a cflags <<<"$(pkg-config --cflags libnfs)"
  read -r -a libs <<<"$(pkg-config --libs libnfs)"
fi

mkdir -p build
# Build under a private name and rename, so concurrent callers never run a half-written binary.
tmp=$(mktemp build/.nfsbench.XXXXXX)
trap 'rm -f "$tmp"' EXIT
"$cc" -O2 -Wall ${cflags[@]+"${cflags[@]}"} -o "$tmp" "$src" "${libs[@]}"
chmod 755 "$tmp"
mv -f "$tmp" "$out"
trap - EXIT
echo "build.sh: built $(pwd)/$out" >&2
