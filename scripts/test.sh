#!/usr/bin/env bash
# The whole podnet test suite: installs what it needs, then format, lint and every test
# (unit, golden fixtures, config errors, topology, and end-to-end against the real binary).
# Usage: scripts/test.sh          (CI runs exactly this through .ci/run)
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n==> %s\n' "$*"; }

# System packages the suite uses. Installed only when missing, so a developer machine
# that has them is not touched.
need_pkgs=()
command -v ip >/dev/null 2>&1 || need_pkgs+=(iproute2)
command -v curl >/dev/null 2>&1 || need_pkgs+=(curl)
command -v nft >/dev/null 2>&1 || need_pkgs+=(nftables)
command -v unshare >/dev/null 2>&1 || need_pkgs+=(util-linux)
command -v prometheus >/dev/null 2>&1 || need_pkgs+=(prometheus)
command -v openssl >/dev/null 2>&1 || need_pkgs+=(openssl)
command -v victoria-metrics >/dev/null 2>&1 || need_pkgs+=(victoria-metrics)
# A real containerd for the pod attribution tests (the tests build their pause image).
command -v containerd >/dev/null 2>&1 || need_pkgs+=(containerd)
command -v runc >/dev/null 2>&1 || need_pkgs+=(runc)
[ -x /usr/lib/cni/bridge ] || need_pkgs+=(containernetworking-plugins)
command -v gcc >/dev/null 2>&1 || need_pkgs+=(gcc libc6-dev)
command -v python3 >/dev/null 2>&1 || need_pkgs+=(python3)
# tmux drives `podnet top` in a real terminal (integration/tests/control.rs).
command -v tmux >/dev/null 2>&1 || need_pkgs+=(tmux)
# clang-19 and llvm-strip-19 let ebpf/check.sh prove the committed objects match the C.
command -v clang-19 >/dev/null 2>&1 || need_pkgs+=(clang-19)
command -v llvm-strip-19 >/dev/null 2>&1 || need_pkgs+=(llvm-19)
# The second kernel (integration/tests/kernel_matrix.rs): Debian 12's 6.1 under qemu, with a
# static busybox as the guest's userland.
command -v qemu-system-x86_64 >/dev/null 2>&1 || need_pkgs+=(qemu-system-x86)
command -v cpio >/dev/null 2>&1 || need_pkgs+=(cpio)
command -v objcopy >/dev/null 2>&1 || need_pkgs+=(binutils)
{ command -v busybox >/dev/null 2>&1 && ! ldd "$(command -v busybox)" >/dev/null 2>&1; } || need_pkgs+=(busybox-static)
if ((${#need_pkgs[@]})); then
    log "installing ${need_pkgs[*]}"
    if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}"
    # Packages that start a system service (prometheus) must not hold the test ports.
    $SUDO systemctl stop prometheus victoria-metrics containerd >/dev/null 2>&1 || true
fi

# The OpenTelemetry Python SDK for the OTLP interop tests, in a virtualenv of the project's.
if ! target/py/bin/python -c 'import opentelemetry.sdk' >/dev/null 2>&1 ||
    ! cmp -s integration/python/requirements.txt target/py/requirements.txt; then
    log "installing the OpenTelemetry Python SDK into target/py"
    python3 -m venv target/py >/dev/null 2>&1 || {
        if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
        $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends python3-venv
        python3 -m venv target/py
    }
    target/py/bin/pip install -q --disable-pip-version-check -r integration/python/requirements.txt
    cp integration/python/requirements.txt target/py/requirements.txt
fi

if ! command -v cargo >/dev/null 2>&1; then
    echo "cargo not found: install Rust with rustup (the toolchain is pinned in rust-toolchain.toml)" >&2
    exit 1
fi
rustup component add rustfmt clippy >/dev/null 2>&1 || true

log "format"
cargo fmt --all -- --check
cargo fmt --manifest-path fuzz/Cargo.toml -- --check

log "eBPF objects match their sources"
ebpf/check.sh

log "lint"
cargo clippy --workspace --all-targets --locked -- -D warnings

log "build (the podnet binary the end-to-end tests run)"
cargo build --workspace --locked

log "tests"
status=0
# Tests that cannot run here record themselves (podnet_pipeline::testing::skip): they count
# as skipped, not passed.
skips="$PWD/target/test-skips.txt"
: >"$skips"
PODNET_TEST_SKIPS="$skips" cargo test --workspace --locked --no-fail-fast 2>&1 | tee target/test-output.txt || status=$?
skipped=$(wc -l <"$skips")
if [ "$skipped" -gt 0 ]; then
    echo
    echo "skipped tests (what each lacks, the test, why):"
    sed 's/^/  /' "$skips"
fi
# In CI, as root, with this script's installs done, a test may only skip for a kernel
# feature the machine rightly lacks; a missing privilege or tool is a failure.
if [ "${CI:-}" = "true" ] && [ "$(id -u)" -eq 0 ] && grep -qv '^kernel' "$skips"; then
    echo "error: tests skipped in CI for want of root or a tool the suite installs (see above)" >&2
    status=1
fi

# Every decoder of outside input under libFuzzer for a while (fuzz/run.sh; stable toolchain),
# from the committed corpus; each target counts as one test.
log "fuzz (${PODNET_FUZZ_SECONDS:=20} s per target)"
# The fuzz build is a second full build of the workspace; the test executables are done with,
# so a clean checkout (CI) frees their space first rather than run out of disk.
if [ "${CI:-}" = "true" ]; then
    find target/debug/deps -maxdepth 1 -type f -perm -u+x -delete
    rm -rf target/debug/incremental
fi
df -h --output=avail,target "$PWD" | tail -1 | awk '{print "disk free before the fuzz build: " $1}'
fuzz_status=0
fuzz/run.sh "$PODNET_FUZZ_SECONDS" 2>&1 | tee target/fuzz-output.txt || fuzz_status=$?
fuzz_ok=$(grep -c '^[a-z_]* *ok ' target/fuzz-output.txt || true)
fuzz_failed=$(grep -c '^[a-z_]* *CRASH' target/fuzz-output.txt || true)
if [ "$fuzz_status" -ne 0 ]; then
    status=1
    # A build that failed ran no target: one failure, not zero.
    [ "$fuzz_failed" -gt 0 ] || fuzz_failed=1
fi

# One closing line for the whole run, summed over every test binary and fuzz target.
awk -v skipped="$skipped" -v fp="$fuzz_ok" -v ff="$fuzz_failed" '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed;?$/) p += $(i-1); if ($i ~ /^failed;?$/) f += $(i-1); if ($i ~ /^ignored;?$/) s += $(i-1) } }
     END { printf "\n%d passed, %d failed, %d skipped\n", p - skipped + fp, f + ff, s + skipped }' target/test-output.txt
exit "$status"
