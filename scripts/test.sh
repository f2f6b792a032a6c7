#!/usr/bin/env bash
# Runs every test of the project: Rust (unit, integration, C programs under
# valgrind), the header check, lints, the C quick start, Python and Go.
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
need cargo-fuzz "cargo install cargo-fuzz"
need go "the Go toolchain"
python3 -c "import ensurepip, venv" 2>/dev/null || { echo "test.sh: Python's venv module is required (apt-get install python3-venv)" >&2; exit 1; }
rustup run nightly rustc --version >/dev/null 2>&1 || { echo "test.sh: the nightly toolchain is required for the fuzzers" >&2; exit 1; }

step() { printf '\n=== %s\n' "$*"; }

step "format and lints"
cargo fmt --all -- --check
cargo clippy --all-targets --quiet -- -D warnings

step "header is up to date"
cargo build --quiet --release
git diff --exit-code -- include/cluster.h || {
    echo "include/cluster.h is stale: commit the regenerated header" >&2
    exit 1
}

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

step "C quick start through pkg-config"
out=$(mktemp -d)
cc -std=c11 -Wall -Wextra -Werror examples/hello.c \
    $(PKG_CONFIG_PATH="$PWD" pkg-config --cflags --libs cluster) -o "$out/hello"
ports=$(python3 -c 'import socket
socks = [socket.socket() for _ in range(2)]
for s in socks: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])')
set -- $ports
(cd "$out" && ./hello "{\"Peers\": [{\"Id\": 1, \"Address\": \"127.0.0.1:$1\"}, {\"Id\": 2, \"Address\": \"127.0.0.1:$2\"}]}")
rm -rf "$out"

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
