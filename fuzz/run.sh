#!/usr/bin/env bash
# Builds the fuzz targets with libFuzzer on the stable toolchain (the instrumentation
# cargo-fuzz would add, without its nightly-only sanitizer flags) and runs each for a while,
# two at a time, on a scratch copy of the committed corpus.
# Usage: fuzz/run.sh [seconds per target, default 20] [target ...]
# A crash fails the run; its input is kept in target/fuzz/artifacts/<target>/. Fix it and
# commit the input as fuzz/corpus/<target>/regression-<what>.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-20}"
shift || true
root="$PWD"
triple="$(rustc -vV | sed -n 's/^host: //p')"
export CARGO_TARGET_DIR="$root/target/fuzz"
export RUSTFLAGS="--cfg fuzzing -Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares -Cdebug-assertions -Coverflow-checks"
(cd fuzz && cargo build --release --locked --target "$triple" --bins)
bin="$CARGO_TARGET_DIR/$triple/release"

targets=("$@")
if ((${#targets[@]} == 0)); then
    mapfile -t targets < <(sed -n 's/^name = "\(.*\)"$/\1/p' fuzz/Cargo.toml | grep -v '^podnet-fuzz$')
fi

run_one() {
    local t="$1" work="$CARGO_TARGET_DIR/work/$1" out="$CARGO_TARGET_DIR/artifacts/$1"
    rm -rf "$work" && mkdir -p "$work" "$out"
    # New inputs go to the scratch directory; the committed corpus is only read.
    if "$bin/$t" "$work" "fuzz/corpus/$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
        -max_len=65536 -artifact_prefix="$out/" -print_final_stats=1 >"$work.log" 2>&1; then
        printf '%-12s ok    %s\n' "$t" "$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$work.log" | grep -o '[0-9]*$') runs, $(grep -o 'cov: [0-9]*' "$work.log" | tail -1)"
    else
        printf '%-12s CRASH (input in %s)\n' "$t" "$out"
        grep -E 'panicked|ERROR|SUMMARY|Test unit written' "$work.log" | head -8 | sed 's/^/    /'
        return 1
    fi
}

status=0
pids=()
names=()
for t in "${targets[@]}"; do
    run_one "$t" &
    pids+=($!)
    names+=("$t")
    # Two at a time: one per core.
    if ((${#pids[@]} == 2)); then
        for p in "${pids[@]}"; do wait "$p" || status=1; done
        pids=()
    fi
done
for p in "${pids[@]}"; do wait "$p" || status=1; done
exit "$status"
