#!/bin/bash
# stat() of one file through `gvfs mount --server nfs://` of `gvfs serve` (no cache): µs per stat, builds alternating.
# Usage: N=20000 bench/stat-cost.sh BUILD_DIR... (each a checkout with its own dist/). Measures what the kernel
# attribute timeout 0 of the mount costs (issue 15, failure 4): every stat() becomes a FUSE request.
set -e
N=${N:-20000}
for round in 1 2 3; do
for b in "$@"; do
  d=$(mktemp -d); mkdir $d/exp $d/mnt; echo hi > $d/exp/f
  node $b/dist/src/cli/main.js serve --export $d/exp --listen 127.0.0.1:0 --state-dir $d/st --json > $d/serve.log 2>&1 &
  sp=$!
  for i in $(seq 100); do port=$(head -1 $d/serve.log | python3 -c 'import json,sys; print(json.loads(sys.stdin.readline())["listening"]["port"])' 2>/dev/null) && break; sleep 0.1; done
  node $b/dist/src/cli/main.js mount --server nfs://127.0.0.1:$port/ $d/mnt --foreground > $d/mount.log 2>&1 &
  mp=$!
  for i in $(seq 200); do grep -q " $d/mnt " /proc/mounts && break; sleep 0.1; done
  us=$(python3 -c "
import os,time
p='$d/mnt/f'; os.stat(p)
t=time.perf_counter()
for i in range($N): os.stat(p)
print(round((time.perf_counter()-t)/$N*1e6,1))")
  echo "round $round $b $(cd $b && git rev-parse --short HEAD): $us us/stat"
  kill $mp; wait $mp 2>/dev/null || true; kill $sp; wait $sp 2>/dev/null || true; rm -rf $d
done; done
