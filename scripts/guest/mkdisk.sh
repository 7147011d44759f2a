#!/usr/bin/env bash
# mkdisk.sh OUT.qcow2 SIZE_MIB DATA_FILE: an ext4 disk of SIZE_MIB holding
# DATA_FILE as /data.bin (what the demo guest checksums), as a qcow2 image.
set -euo pipefail
out="$1" mib="$2" data="$3"
tmp="$(mktemp -d "${TMPDIR:-/tmp}/gvfs-disk.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/root"
cp "$data" "$tmp/root/data.bin"
echo "gvfs demo disk ${mib} MiB" > "$tmp/root/label"
echo 0 > "$tmp/root/counter"
truncate -s "${mib}M" "$tmp/disk.raw"
mkfs.ext4 -q -F -L gvfs-demo -E lazy_itable_init=0,lazy_journal_init=0 -d "$tmp/root" "$tmp/disk.raw"
qemu-img convert -q -f raw -O qcow2 "$tmp/disk.raw" "$out.tmp"
mv -f "$out.tmp" "$out"
