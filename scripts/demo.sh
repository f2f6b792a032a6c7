#!/usr/bin/env bash
# The main job: a local TCP cluster and the mock network, from embedded configs.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh demo
cargo run --quiet --release --bin cluster-demo -- "$@"
