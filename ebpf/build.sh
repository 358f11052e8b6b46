#!/usr/bin/env bash
# Compiles every ebpf/src/*.bpf.c into a stripped, reproducible ebpf/<name>.bpf.o.
# Usage: ebpf/build.sh [output-dir]   (default: ebpf/, the committed objects)
set -euo pipefail
cd "$(dirname "$0")"
out="$(realpath -m "${1:-.}")"
clang="${BPF_CLANG:-clang-19}"
strip="${BPF_STRIP:-llvm-strip-19}"
mkdir -p "$out"
# clang-19 orders some BTF forward declarations differently depending on the length of the
# paths it is given (seen: socktable.bpf.o built under /x differed from the same build under
# /work/main/ebpf), so a checkout's location would change the object. Every object is
# compiled in a copy of the sources at a path of fixed length, with fixed-length arguments;
# -fdebug-prefix-map keeps that path out of .BTF.ext.
work="$(mktemp -d /tmp/podnet-ebpf.XXXXXXXXXX)"
trap 'rm -rf "$work"' EXIT
cp -r src include "$work/"
mkdir "$work/out"
for src in src/*.bpf.c; do
    name="$(basename "$src" .c)"
    (
        cd "$work"
        "$clang" -O2 -g -target bpf -D__TARGET_ARCH_x86 -Wall -Werror \
            -fdebug-prefix-map="$work"=. -Iinclude -Isrc -c "$src" -o "out/$name.o"
        "$strip" -g "out/$name.o"
    )
    cp "$work/out/$name.o" "$out/$name.o"
done
