#!/usr/bin/env bash
# Boots Debian 12's current 6.1 cloud kernel under qemu (TCG: no KVM needed) with a small
# initramfs holding the podnet binary, busybox, nft and the test rounds, and collects what
# the guest reports. Usage:
#   run.sh PODNET_BINARY ROUNDS_DIR OUT_DIR
# ROUNDS_DIR holds one podnet config per round (run in name order); OUT_DIR receives
# console.log (the kernel's serial console) and results.txt (the guest's report, see
# guest-init.sh). The kernel package is cached in $PODNET_KERNEL_CACHE (default
# ~/.cache/podnet/kernel-matrix): downloaded from Debian's archive, unpacked, never installed.
# Exit status: 0 when the guest ran to its end ("@@@ done"), else non-zero.
# Needs qemu-system-x86, busybox-static, cpio (scripts/test.sh installs them).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
podnet=$(readlink -f "$1")
rounds=$(readlink -f "$2")
out=$(readlink -m "$3")
cache=${PODNET_KERNEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/podnet/kernel-matrix}
flavour=cloud-amd64
mkdir -p "$cache" "$out"

# The ABI the bookworm metapackage points at today: security updates retire old ABIs from
# the mirror, so the version is never written down here.
abi_of_metapackage() {
    apt-cache depends "linux-image-$flavour" 2>/dev/null |
        sed -n "s/.*Depends: linux-image-\(6\.1\.0-[0-9]*\)-$flavour\$/\1/p" | head -1
}
abi=${PODNET_KERNEL_ABI:-$(abi_of_metapackage)}
if [ -z "$abi" ]; then
    apt-get update -qq >/dev/null
    abi=$(abi_of_metapackage)
fi
[ -n "$abi" ] || { echo "run.sh: cannot find linux-image-$flavour in apt's lists (is this Debian 12?)" >&2; exit 2; }
kver=$abi-$flavour
pkg=linux-image-$kver-unsigned
tree=$cache/$pkg
if [ ! -e "$tree/boot/vmlinuz-$kver" ]; then
    (cd "$cache" && { ls "${pkg}"_*.deb >/dev/null 2>&1 || apt-get download "$pkg" >/dev/null; })
    rm -rf "$tree.tmp" && dpkg -x "$cache/${pkg}"_*.deb "$tree.tmp" && mv "$tree.tmp" "$tree"
fi

# The initramfs: busybox, podnet (debug info dropped: a 6x smaller archive), nft, their
# libraries, the modules the rounds need, the rounds, and /init.
root=$out/root
rm -rf "$root"
mkdir -p "$root"/{bin,sbin,proc,sys,dev,tmp,run,etc,cfg,lib64,lib/x86_64-linux-gnu}
if ldd "$(command -v busybox)" >/dev/null 2>&1; then
    echo "run.sh: $(command -v busybox) is linked dynamically: the guest needs busybox-static" >&2
    exit 2
fi
cp "$(command -v busybox)" "$root/bin/busybox"
for applet in $("$root/bin/busybox" --list); do
    [ "$applet" = busybox ] || ln -sf busybox "$root/bin/$applet"
done
objcopy --strip-debug "$podnet" "$root/bin/podnet"
cp "$(command -v nft)" "$root/sbin/nft"
for binary in "$podnet" "$(command -v nft)"; do
    ldd "$binary" | awk '/=>/ {print $3} /ld-linux/ {print $1}' | while read -r lib; do
        [ -f "$lib" ] || continue
        case "$lib" in
            /lib64/*) cp -L "$lib" "$root/lib64/" ;;
            *) cp -L "$lib" "$root/lib/x86_64-linux-gnu/" ;;
        esac
    done
done
# The modules the rounds need, each after its dependencies (read from the module's own
# modinfo: the guest has no modprobe, the package no modules.dep).
moddir=lib/modules/$kver
: >"$root/modules.list"
declare -A added=()
add_module() {
    local name=$1 file dep
    [ -z "${added[$name]:-}" ] || return 0
    added[$name]=1
    file=$(grep -E "(^|/)${name//_/[_-]}\.ko\$" "$tree/$moddir/modules.order" | head -1) || true
    [ -n "$file" ] || return 0 # built into this kernel
    for dep in $(strings -a "$tree/$moddir/$file" | sed -n 's/^depends=//p' | tr ',' ' '); do
        add_module "$dep"
    done
    mkdir -p "$root/$moddir/$(dirname "$file")"
    cp "$tree/$moddir/$file" "$root/$moddir/$file"
    echo "$file" >>"$root/modules.list"
}
for m in virtio_pci virtio_net virtio_blk veth dummy nf_tables sch_ingress cls_bpf; do add_module "$m"; done
cp "$rounds"/*.yaml "$root/cfg/"
cp "$here/guest-init.sh" "$root/init"
chmod +x "$root/init"
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) >"$out/initrd.gz"
rm -rf "$root"

# A scratch disk for the block IO probe; a virtio NIC (on a hub with no other port) for
# the virtio-net control command probe.
# TCG guests on a busy host occasionally stall for good (timer interrupts stop arriving:
# RCU stall warnings, then silence). A guest whose report has not grown for
# $PODNET_KERNEL_STALL seconds is stopped, its console kept as console-stalled.log, and booted
# once more; a second stall fails.
stall=${PODNET_KERNEL_STALL:-200}
boot() {
    : >"$out/console.log"
    : >"$out/results.txt"
    timeout "${PODNET_KERNEL_TIMEOUT:-900}" qemu-system-x86_64 -accel tcg -cpu max -m 2048 -smp 2 \
        -no-reboot -nographic -monitor none -nic none \
        -serial "file:$out/console.log" -serial "file:$out/results.txt" \
        -drive "file=$out/disk.img,if=virtio,format=raw" \
        -netdev hubport,id=n0,hubid=0 -device virtio-net-pci,netdev=n0,romfile= \
        -kernel "$tree/boot/vmlinuz-$kver" -initrd "$out/initrd.gz" \
        -append "console=ttyS0 panic=-1 rdinit=/init ${PODNET_KERNEL_APPEND:-quiet}" </dev/null &
    local qemu=$! size=-1 still=0
    while kill -0 "$qemu" 2>/dev/null; do
        sleep 5
        local now
        now=$(stat -c %s "$out/results.txt")
        if [ "$now" -ne "$size" ]; then size=$now still=0; else still=$((still + 5)); fi
        if [ "$still" -ge "$stall" ]; then
            echo "run.sh: the guest reported nothing for ${stall}s: stopped (console in $out/console-stalled.log)" >&2
            cp "$out/console.log" "$out/console-stalled.log"
            kill "$qemu" 2>/dev/null
            wait "$qemu" 2>/dev/null
            return 3
        fi
    done
    wait "$qemu"
}
truncate -s 16M "$out/disk.img"
rm -f "$out/console-stalled.log"
status=0
boot || status=$?
if [ "$status" -eq 3 ]; then
    status=0
    boot || status=$?
fi
rm -f "$out/disk.img" "$out/initrd.gz"
[ "$status" -eq 0 ] || { echo "run.sh: qemu exited with $status (124: timed out, 3: stalled twice)" >&2; exit 1; }
grep -q '^@@@ done' "$out/results.txt" || { echo "run.sh: the guest did not finish: see $out/console.log" >&2; exit 1; }
