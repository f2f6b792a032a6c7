#!/usr/bin/env bash
# Runs every test of the project: Rust (unit, integration, C programs under
# valgrind), the generated-files check, lints, the C and Go install used
# from outside the checkout, Python and Go.
# A missing toolchain is an error, never a skipped suite.
set -euo pipefail
cd "$(dirname "$0")/.."

# Install what a fresh machine lacks; it stops with a message naming anything
# it cannot install. Below, a missing tool is still an error, never a skip.
./scripts/setup.sh

need() {
    command -v "$1" >/dev/null 2>&1 || { echo "test.sh: '$1' is required but not installed ($2)" >&2; exit 1; }
}
need cc "a C compiler"
need valgrind "apt-get install valgrind"
need pkg-config "apt-get install pkg-config"
need readelf "apt-get install binutils"
need cargo-fuzz "cargo install cargo-fuzz"
need go "the Go toolchain"
python3 -c "import ensurepip, venv" 2>/dev/null || { echo "test.sh: Python's venv module is required (apt-get install python3-venv)" >&2; exit 1; }
rustup run nightly rustc --version >/dev/null 2>&1 || { echo "test.sh: the nightly toolchain is required for the fuzzers" >&2; exit 1; }

step() { printf '\n=== %s\n' "$*"; }

step "format and lints"
cargo fmt --all -- --check
cargo clippy --all-targets --quiet -- -D warnings

step "generated files are up to date, the Go module has the LICENSE"
cargo build --quiet --release
git diff --exit-code -- include/cluster.h bindings/go/version.go || {
    echo "include/cluster.h or bindings/go/version.go is stale: commit what build.rs regenerated" >&2
    exit 1
}
cmp LICENSE bindings/go/LICENSE || { echo "bindings/go/LICENSE must be a copy of LICENSE" >&2; exit 1; }

step "Rust and C tests"
log=$(mktemp)
cargo build --quiet    # the C programs link target/debug/libcluster.so
if ! cargo test --quiet >"$log" 2>&1; then
    cat "$log"
    echo "cargo test failed" >&2
    exit 1
fi
grep -E "^test result" "$log"
rm -f "$log"

step "install: C and Go without the checkout (scripts/test-install.sh)"
./scripts/test-install.sh

step "Python package: sdist and wheel built, installed outside the checkout, tested"
pyenv=$(mktemp -d)
trap 'rm -rf "$pyenv"' EXIT
bash bindings/python/package_test.sh "$pyenv"

step "Go wrapper (vet, race, cgo checks) and the cross-language test"
# The cross-language test runs `python3` with the package installed above.
PATH="$pyenv/venv/bin:$PATH" CLUSTER_XLANG_PYTHON=require bash bindings/go/test.sh

step "fuzzers, a short run each (FUZZ_SECONDS=${FUZZ_SECONDS:=15})"
for target in frames handshake records; do
    cargo +nightly fuzz run --fuzz-dir fuzz "$target" -- \
        -max_total_time="$FUZZ_SECONDS" -rss_limit_mb=1024 2>&1 | grep -E "^Done|ERROR|panicked" 
    test "${PIPESTATUS[0]}" -eq 0 || { echo "fuzzer $target found a failure (see fuzz/artifacts)" >&2; exit 1; }
done

echo
echo "all suites passed"
