#!/usr/bin/env bash
# Installs what GVFS and its tests need on a Debian machine (as root), only
# what is missing: Debian packages for the real peers the tests start
# (libnfs client tools, nfs-ganesha + rpcbind), a C toolchain, npm
# dependencies, the build.
set -euo pipefail
cd "$(dirname "$0")/.."

# --- root and /dev/fuse (bench/setup block) ---------------------------------
# FUSE mounts, QEMU clones and the identity tests need root and /dev/fuse.
# A developer's partial machine may go on without them (those tests skip);
# under CI a missing prerequisite fails the set-up loudly.
problems=()
[[ $(id -u) -eq 0 ]] || problems+=("not running as root (uid $(id -u))")
[[ -c /dev/fuse ]] || problems+=("/dev/fuse is missing (load the fuse module or pass the device into the container)")
if ((${#problems[@]})); then
  for p in "${problems[@]}"; do echo "setup: $p" >&2; done
  if [[ -n ${CI:-} ]]; then
    echo "setup: CI is set: GVFS's tests need root and /dev/fuse; failing" >&2
    exit 1
  fi
  echo "setup: WARNING: the FUSE, VM and root-only tests will be skipped on this machine" >&2
fi

# --- Debian packages (bench/setup block) -------------------------------------
# build-essential (gcc, make, libc6-dev), python3 and pkg-config: node-gyp builds
# the native addons (our native/ layer, zstd-napi, better-sqlite3 without a
# prebuilt binary) and bench/native/build.sh builds nfsbench against libnfs-dev.
# rsync: the vm benchmark's sparse-aware copy-then-run baseline (rsync --sparse over ssh).
# chromium: the dashboard test drives it with playwright-core (a devDependency).
# fuse3 (fusermount, /dev/fuse helper) and libfuse3-dev: gvfs mount's FUSE front end in native/. ceph-mon, ceph-osd, radosgw, ceph-common: the
# single-node Ceph cluster the object-store tests start (S3 through radosgw).
# strace: the durability test watches the export's fsyncs before each reply.
DEBS=(build-essential python3 pkg-config libnfs-utils libnfs-dev nfs-ganesha nfs-ganesha-vfs rpcbind fuse3 libfuse3-dev ceph-mon ceph-osd radosgw ceph-common openssh-server openssh-client sshfs rsync qemu-utils qemu-system-x86 busybox-static cpio chromium openssl util-linux iproute2 strace)

missing=()
for p in "${DEBS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "setup: missing Debian packages (${missing[*]}); run as root to install them" >&2
    exit 1
  fi
  echo "setup: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

# The Debian nfs-ganesha package may start its own daemons; the tests run their own.
systemctl disable --now nfs-ganesha >/dev/null 2>&1 || true

node -e 'const [a]=process.versions.node.split(".").map(Number); if (a < 20) { console.error("setup: Node.js >= 20 needed, found " + process.versions.node); process.exit(1) }'

# Native addons (FUSE binding, ssh2's crypto) build against the Debian headers installed above.
if [[ ! -d node_modules ]] || [[ package-lock.json -nt node_modules/.package-lock.json ]]; then
  echo "setup: installing npm dependencies" >&2
  npm ci --no-audit --no-fund >&2
fi

# The native system layer (native/: openat2, mknodat, per-thread credentials ...) the local export runs on.
bash scripts/build-native.sh
npm run --silent build >&2

# --- benchmark client (bench/setup block) -------------------------------------
# bench/native: nfsbench (the NFS client of the benchmarks, on libnfs) and relay (the chain suite's floor); a no-op when up to date.
bash bench/native/build.sh

# The file-operation exerciser (test/integration/fsx, long runs in bench/results): C for mmap; rebuilt when its source is newer.
mkdir -p build
if [[ tools/fsx/gvfs-fsx.c -nt build/gvfs-fsx ]]; then
  cc -O2 -Wall -o build/gvfs-fsx tools/fsx/gvfs-fsx.c >&2
fi

# The demo guest (Debian cloud kernel + busybox initramfs) the VM tests, benchmark and demo boot; quick when built.
bash scripts/guest/build.sh || echo "setup: the demo guest could not be built (scripts/guest/build.sh); the VM tests will try again" >&2
