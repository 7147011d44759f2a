#!/usr/bin/env bash
# Builds the GVFS demo guest from Debian parts, once, into a cache directory
# outside git (default build/guest, or $GVFS_GUEST_DIR / the first argument):
#   vmlinuz      the Debian cloud kernel (linux-image-<abi>-cloud-amd64,
#                fetched with apt-get download and unpacked, never installed)
#   initrd.img   a busybox-static initramfs: scripts/guest/init plus the
#                virtio modules the cloud kernel builds as modules
#   data.bin     1 MiB of random data, the file the guest checksums
#   disk.qcow2   a 64 MiB ext4 disk holding data.bin (scripts/guest/mkdisk.sh
#                makes other sizes)
#   guest.json   what was built: kernel ABI and package version, hashes
# Quick and silent when the guest is already there and its recipe unchanged.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
out="${1:-${GVFS_GUEST_DIR:-$repo/build/guest}}"
stamp="$(cat "$here/build.sh" "$here/init" "$here/mkdisk.sh" | sha256sum | cut -c1-16)"
if [[ -f "$out/guest.json" ]] && grep -q "\"recipe\": \"$stamp\"" "$out/guest.json"; then
  exit 0
fi
for tool in apt-get apt-cache dpkg-deb cpio gzip mkfs.ext4 qemu-img; do
  command -v "$tool" >/dev/null || { echo "guest: $tool is missing (scripts/setup.sh installs it)" >&2; exit 1; }
done
busybox=/bin/busybox
[[ -x "$busybox" ]] || { echo "guest: $busybox is missing (Debian busybox-static)" >&2; exit 1; }

echo "guest: building the demo guest in $out" >&2
mkdir -p "$out"
work="$(mktemp -d "${TMPDIR:-/tmp}/gvfs-guest.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# The current cloud kernel ABI, from the meta-package's dependency.
find_abi() { apt-cache depends linux-image-cloud-amd64 2>/dev/null | sed -n 's/^ *Depends: \(linux-image-[0-9].*-cloud-amd64\)$/\1/p' | head -1; }
pkg="$(find_abi)"
if [[ -z "$pkg" && $(id -u) -eq 0 ]]; then
  apt-get update -qq >&2
  pkg="$(find_abi)"
fi
[[ -n "$pkg" ]] || { echo "guest: apt-cache knows no linux-image-cloud-amd64 (run apt-get update as root)" >&2; exit 1; }
abi="${pkg#linux-image-}"
(cd "$work" && apt-get download -q "$pkg" 2>&1 | grep -v 'unsandboxed as root' >&2 || true)
deb="$(ls "$work"/linux-image-*.deb 2>/dev/null | head -1)"
[[ -n "$deb" ]] || { echo "guest: apt-get download $pkg failed" >&2; exit 1; }
version="$(dpkg-deb -f "$deb" Version)"
dpkg-deb -x "$deb" "$work/kernel"
moddir="$work/kernel/lib/modules/$abi"
config="$work/kernel/boot/config-$abi"

# Built into the cloud kernel (=y) is fine; as a module (=m) it goes into the initramfs.
for opt in EXT4_FS SERIAL_8250_CONSOLE DEVTMPFS BLK_DEV_INITRD RD_GZIP; do
  grep -q "^CONFIG_$opt=y" "$config" || { echo "guest: the cloud kernel lacks CONFIG_$opt=y" >&2; exit 1; }
done
root="$work/initramfs"
mkdir -p "$root"/{bin,dev,proc,sys,mnt,lib/modules}
cp "$busybox" "$root/bin/busybox"
ln -s busybox "$root/bin/sh"
cp "$here/init" "$root/init"
chmod 755 "$root/init"
# Modules in load order: each after the modules its .modinfo "depends=" names.
declare -A done_mod=()
order=()
add_mod() {
  local name="$1" ko deps d
  [[ -n "${done_mod[$name]:-}" ]] && return
  done_mod[$name]=1
  ko="$(find "$moddir/kernel" -name "$name.ko" -o -name "${name//_/-}.ko" | head -1)"
  if [[ -z "$ko" ]]; then
    grep -q "/$name.ko$" "$moddir/modules.builtin" && return
    echo "guest: module $name not found in $pkg" >&2; exit 1
  fi
  deps="$(grep -a -o 'depends=[A-Za-z0-9_,-]*' "$ko" | head -1 | cut -d= -f2 | tr ',' ' ')"
  for d in $deps; do add_mod "$d"; done
  cp "$ko" "$root/lib/modules/$name.ko"
  order+=("$name")
}
for opt_mod in VIRTIO_PCI:virtio_pci VIRTIO_BLK:virtio_blk; do
  if grep -q "^CONFIG_${opt_mod%%:*}=m" "$config"; then add_mod "${opt_mod#*:}"; fi
done
printf '%s\n' "${order[@]}" > "$root/lib/modules/order"
(cd "$root" && find . | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0) | gzip -9 > "$work/initrd.img"
cp "$work/kernel/boot/vmlinuz-$abi" "$work/vmlinuz"

head -c 1048576 /dev/urandom > "$work/data.bin"
bash "$here/mkdisk.sh" "$work/disk.qcow2" 64 "$work/data.bin"

for f in vmlinuz initrd.img data.bin disk.qcow2; do mv -f "$work/$f" "$out/$f"; done
sum() { sha256sum "$1" | cut -d' ' -f1; }
cat > "$out/guest.json.tmp" <<JSON
{
  "recipe": "$stamp",
  "kernelPackage": "$pkg",
  "kernelVersion": "$version",
  "abi": "$abi",
  "modules": [$(printf '"%s",' "${order[@]}" | sed 's/,$//')],
  "append": "console=ttyS0 panic=-1 quiet",
  "dataMd5": "$(md5sum "$out/data.bin" | cut -d' ' -f1)",
  "sha256": { "vmlinuz": "$(sum "$out/vmlinuz")", "initrd.img": "$(sum "$out/initrd.img")", "disk.qcow2": "$(sum "$out/disk.qcow2")" }
}
JSON
mv "$out/guest.json.tmp" "$out/guest.json"
echo "guest: $pkg ($version), modules ${order[*]}; $(du -sh "$out" | cut -f1) in $out" >&2
