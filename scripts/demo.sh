#!/usr/bin/env bash
# The main job: a local TCP cluster and the mock network, from embedded configs.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo >/dev/null || { echo "demo: cargo (Rust) is required: https://rustup.rs" >&2; exit 1; }
cargo run --quiet --release --bin cluster-demo -- "$@"
