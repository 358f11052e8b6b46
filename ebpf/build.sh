#!/usr/bin/env bash
# Compiles every ebpf/src/*.bpf.c into a stripped, reproducible ebpf/<name>.bpf.o.
# Usage: ebpf/build.sh [output-dir]   (default: ebpf/, the committed objects)
set -euo pipefail
cd "$(dirname "$0")"
out="${1:-.}"
clang="${BPF_CLANG:-clang-19}"
strip="${BPF_STRIP:-llvm-strip-19}"
mkdir -p "$out"
for src in src/*.bpf.c; do
    name="$(basename "$src" .c)"
    # -fdebug-prefix-map keeps paths out of .BTF.ext, so the object is byte-identical
    # wherever it is built.
    "$clang" -O2 -g -target bpf -D__TARGET_ARCH_x86 -Wall -Werror \
        -fdebug-prefix-map="$PWD"=. -Iinclude -Isrc -c "$src" -o "$out/$name.o"
    "$strip" -g "$out/$name.o"
done
