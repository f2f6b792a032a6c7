#!/usr/bin/env bash
# Builds and runs the benchmark: libcluster (release, through its C ABI: one
# message per call, and batched) vs libzmq (one message per call) vs plain
# TCP, sender and receiver in separate processes over loopback; then the cost
# as the cluster grows (N nodes all broadcasting) and the mock line.
# Installs libzmq3-dev with apt if it is missing.
# Usage: bash bench/run.sh [--secure] [--runs N] [--scale F] [--only TEXT] [--impl NAME] [--grow LIST]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

if ! pkg-config --exists libzmq 2>/dev/null; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "installing libzmq3-dev and pkg-config with apt-get" >&2
    $sudo apt-get install -y libzmq3-dev pkg-config >/dev/null 2>&1 ||
        { $sudo apt-get update >/dev/null && $sudo apt-get install -y libzmq3-dev pkg-config >/dev/null; }
fi

cargo build --release --lib --quiet
target="${CARGO_TARGET_DIR:-$root/target}/release"
mkdir -p bench/build
cc -std=gnu11 -O2 -Wall -Wextra -Werror -pthread -Iinclude \
    bench/main.c bench/net.c bench/roles.c bench/driver.c bench/proc.c bench/grow.c \
    -o bench/build/bench \
    -L"$target" -Wl,-rpath,"$target" -lcluster $(pkg-config --cflags --libs libzmq) -lm

echo "date: $(date -u '+%Y-%m-%d %H:%M UTC'), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(uname -sr)"

# The mock network's broadcast line (the in-process mock, through the Rust API),
# in full runs (not with --only or --impl). Measured first, on a machine the
# growth table's 64 processes have not just left busy; printed last.
case " $* " in *" --only "* | *" --impl "* | *" --secure "*) mock=no ;; *) mock=yes ;; esac
if [ "$mock" = yes ] && [ -f bench/mock_broadcast.rs ]; then
    lines=$(cargo bench --quiet --bench mock_broadcast 2>/dev/null | grep 'median' || true)
fi

bench/build/bench "$@"

if [ "$mock" = yes ] && [ -f bench/mock_broadcast.rs ]; then
    echo
    if [ -z "$lines" ]; then
        echo "mock broadcast: FAILED (cargo bench --bench mock_broadcast)"
    else
        echo "$lines" | while IFS= read -r line; do
            median=$(echo "$line" | sed -n 's/.*median \([0-9.]*\) M.*/\1/p')
            verdict=$(awk -v m="$median" 'BEGIN { print (m >= 5) ? "met" : "MISSED" }')
            echo "$line (goal >= 5 M deliveries/s: $verdict)"
        done
    fi
fi

