#!/usr/bin/env bash
# System calls per NFS call of `gvfs serve` under nfsbench's create/stat/remove loop:
#   bash bench/strace-meta.sh BUILD_DIR OUT_PREFIX [FILES]
# Runs the server of BUILD_DIR (its dist/ and bench/native/build/nfsbench) under `strace -c -f` twice, with
# 200 and with 200+FILES files (default 2000), and prints per syscall (second - first) / (FILES * 4 calls):
# start-up and shut-down cancel out. nfsbench's meta op makes four calls per file (CREATE, LOOKUP, GETATTR,
# REMOVE). strace slows the server several times over: counts, not times, are the result.
set -euo pipefail
build=$(readlink -f "$1") out=$2 files=${3:-2000}
tmp=$(mktemp -d /tmp/gvfs-strace-meta.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
one() { # $1 files, $2 strace output
  local exp=$tmp/export-$1 state=$tmp/state-$1
  mkdir -p "$exp"
  strace -c -f -o "$2" node "$build/dist/src/cli/main.js" serve --export "$exp" --listen 127.0.0.1:0 --state-dir "$state" --json >"$tmp/log-$1" 2>&1 &
  local spid=$!
  local port=
  for _ in $(seq 600); do
    port=$(grep -o '"port":[0-9]*' "$tmp/log-$1" | head -n 1 | cut -d: -f2 || true)
    [[ -n $port ]] && break
    sleep 0.1
  done
  [[ -n $port ]] || { echo "server did not start: $(cat "$tmp/log-$1")" >&2; kill "$spid"; exit 1; }
  "$build/bench/native/build/nfsbench" --host 127.0.0.1 --nfs-port "$port" --mount-port "$port" --export / --op meta --dir m --files "$1" --timeout 900 >/dev/null
  kill -INT "$(pgrep -P "$spid" -x node || echo "$spid")" 2>/dev/null || true
  wait "$spid" || true
}
one 200 "$out.small"
one $((200 + files)) "$out.big"
python3 - "$out.small" "$out.big" "$files" <<'PY' | tee "$out.txt"
import re, sys
def parse(f):
    d = {}
    for line in open(f):
        m = re.match(r'\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)\s*$', line)
        if m and m.group(2) != 'total':
            d[m.group(2)] = int(m.group(1))
    return d
a, b, n = parse(sys.argv[1]), parse(sys.argv[2]), int(sys.argv[3]) * 4
rows = sorted(((b.get(k, 0) - a.get(k, 0)) / n, k) for k in set(a) | set(b))
print(f"syscalls per NFS call ({n} calls: (run with 200+{n//4} files) - (run with 200 files))")
for v, k in reversed(rows):
    if abs(v) >= 0.005:
        print(f"{k:24} {v:8.2f}")
print(f"{'total':24} {sum(v for v, _ in rows):8.2f}")
PY
