#!/usr/bin/env bash
# Proves the committed objects are what the sources compile to. Needs clang-19 and
# llvm-strip-19; prints "skipped" and succeeds without them (a plain build needs neither).
set -euo pipefail
cd "$(dirname "$0")"
if ! command -v "${BPF_CLANG:-clang-19}" >/dev/null || ! command -v "${BPF_STRIP:-llvm-strip-19}" >/dev/null; then
    echo "ebpf/check.sh: skipped (clang-19/llvm-strip-19 not installed)"
    exit 0
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
./build.sh "$tmp"
status=0
for built in "$tmp"/*.bpf.o; do
    name="$(basename "$built")"
    if ! cmp -s "$built" "$name"; then
        echo "ebpf/check.sh: $name does not match src/${name%.o}.c: run ebpf/build.sh and commit the object" >&2
        status=1
    fi
done
for committed in *.bpf.o; do
    [ -e "$tmp/$committed" ] || { echo "ebpf/check.sh: $committed has no source in src/" >&2; status=1; }
done
[ $status -eq 0 ] && echo "ebpf/check.sh: $(ls "$tmp" | wc -l) objects match their sources"
exit $status
