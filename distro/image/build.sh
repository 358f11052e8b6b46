#!/usr/bin/env bash
# Builds podnet's container image with no container engine: the podnet binary (debug info
# dropped), the shared libraries it links (glibc), and the directories the DaemonSet mounts
# over, in one layer. Writes an OCI image-layout directory and the same as a tar that
# `ctr -n k8s.io images import` and `docker load` take. Same binary, same digest.
#
# Usage: distro/image/build.sh [OUT_DIR]        (default: target/image)
#   PODNET_BINARY=path   package this binary instead of `cargo build --release`
#   PODNET_IMAGE=ref     the image reference (default: podnet:<workspace version>)
# Push: skopeo copy oci:OUT_DIR/oci:podnet:<version> docker://registry/podnet:<version>
#   (or `ctr images import` the tar, then `ctr images push`).
set -euo pipefail
cd "$(dirname "$0")/../.."
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)
name=${PODNET_IMAGE:-podnet:$version}
out=${1:-target/image}
binary=${PODNET_BINARY:-}
if [ -z "$binary" ]; then
    cargo build --release --locked -p podnet
    binary=target/release/podnet
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
objcopy --strip-debug "$binary" "$work/podnet"
adds=(--add "$work/podnet:/podnet:755")
for lib in $(ldd "$binary" | awk '/=>/ {print $3} /ld-linux/ {print $1}'); do
    [ -f "$lib" ] && adds+=(--add "$(readlink -f "$lib"):$lib:755")
done
rm -rf "$out/oci"
mkdir -p "$out"
tar=$out/podnet-$version.oci.tar
python3 distro/image/mkimage.py --name "$name" --entrypoint /podnet --cmd run \
    --dir tmp --dir etc/podnet --dir var/log/podnet --dir host/proc --dir run/containerd \
    "${adds[@]}" --out "$out/oci" --tar "$tar"
echo "image: $tar ($(du -h "$tar" | cut -f1) as a tar)"
