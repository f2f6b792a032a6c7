#!/usr/bin/env bash
# Installs what the demo and the tests need on a fresh Debian machine that has
# Rust, Go, Python 3 and a C compiler: valgrind, pkg-config, Python's venv
# module, Chromium (the trace diagram's browser test), rustfmt and clippy, the nightly toolchain and cargo-fuzz (for the
# fuzzers). The Python tests install pytest, cffi and the build tools into
# venvs of their own.
# Idempotent and quiet when everything is there. Sourced or run by
# scripts/test.sh and scripts/demo.sh; `./scripts/setup.sh demo` installs only
# what the demo needs.
set -euo pipefail

fail() { echo "setup: $*" >&2; exit 1; }

command -v cargo >/dev/null 2>&1 || fail "no Rust toolchain: install it with rustup (https://rustup.rs)"
[ "${1:-}" = demo ] && exit 0

command -v go >/dev/null 2>&1 || fail "no Go toolchain: install Go (https://go.dev/dl)"
command -v python3 >/dev/null 2>&1 || fail "no Python 3"

missing=()
command -v valgrind >/dev/null 2>&1 || missing+=(valgrind)
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
command -v cc >/dev/null 2>&1 || missing+=(gcc)
python3 -c "import ensurepip, venv" 2>/dev/null || missing+=(python3-venv)
# The trace diagram's test renders its HTML page in a headless browser.
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
    command -v apt-get >/dev/null 2>&1 || fail "missing ${missing[*]}, and no apt-get to install them"
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    echo "setup: installing ${missing[*]}" >&2
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if command -v rustup >/dev/null 2>&1; then
    cargo fmt --version >/dev/null 2>&1 || rustup component add rustfmt
    cargo clippy --version >/dev/null 2>&1 || rustup component add clippy
    rustup run nightly rustc --version >/dev/null 2>&1 ||
        rustup toolchain install nightly --profile minimal
fi
cargo fmt --version >/dev/null 2>&1 || fail "no rustfmt (rustup component add rustfmt)"
cargo clippy --version >/dev/null 2>&1 || fail "no clippy (rustup component add clippy)"
command -v cargo-fuzz >/dev/null 2>&1 || {
    echo "setup: cargo install cargo-fuzz" >&2
    cargo install --quiet cargo-fuzz --locked
}
