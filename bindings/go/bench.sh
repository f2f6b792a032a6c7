#!/usr/bin/env bash
# Measures the Go binding as the C bench measures the C API, sender and
# receiver in separate processes: unicast 64 B msgs/s and ping-pong 64 B
# round trips through the Go wrapper (Outbox/Inbox; Send/Recv; SendMany/
# Recv), through the C ABI called from Go, and with the C bench's own C
# children, interleaved run by run, with each wrapper path's ratio to C;
# then the mock workload: 5 mock servers broadcasting through the
# wrapper's Outbox/Inbox and Send/Recv beside a pure-Go baseline with the
# original mock's costs, the core's mock through the raw C ABI, and the
# core's mock without Go (cargo bench --bench mock_broadcast, run once a
# round), and the Python wrapper's mock (bench.py --mock-once, with the
# interpreter PYTHON, default python3, if it has the cluster package).
# Arguments go to the driver (bench/gobench): [-runs N]
# [-only unicast|ping-pong|mock] [-impl go,direct,batch,raw,c]
# [-mock base,go,gofaults,direct,raw,rawcall,c,cbatch,cfaults,cbatchfaults,py,pymany]
# [-alt OTHER-GOBENCH] [-scale F]; e.g.
# -impl go,c,go+c,c+go shows which side costs what.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$here/../.."
(cd "$root" && cargo build --release --quiet)
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
target="$root/target/release"
if ! pkg-config --exists libzmq 2>/dev/null; then
    # The C bench links libzmq; bench/run.sh installs it (apt).
    echo "libzmq missing: run 'bash bench/run.sh --only none' once to install it" >&2
    exit 1
fi
cc -std=gnu11 -O2 -Wall -Wextra -Werror -pthread -I"$root/include" \
    "$root"/bench/main.c "$root"/bench/net.c "$root"/bench/roles.c "$root"/bench/driver.c \
    "$root"/bench/proc.c "$root"/bench/grow.c \
    -o "$tmp/cbench" \
    -L"$target" -Wl,-rpath,"$target" -lcluster $(pkg-config --cflags --libs libzmq) -lm
# The core's mock bench (the mock workload's c, cbatch, cfaults and cbatchfaults lines).
cmock=$(cd "$root" && cargo bench --bench mock_broadcast --no-run --message-format=json 2>/dev/null |
    sed -n 's/.*"executable":"\([^"]*mock_broadcast[^"]*\)".*/\1/p' | tail -1)
# The Python wrapper's mock (the mock workload's py and pymany lines): an
# interpreter with the cluster package installed, PYTHON or python3.
python="${PYTHON:-python3}"
# A relative path is made absolute (gobench runs from here), without
# resolving links: a venv's python is a link out of the venv.
case "$python" in
    /*) ;;
    */*) python="$(cd "$(dirname "$python")" && pwd)/$(basename "$python")" ;;
esac
pyargs=()
if ! command -v "$python" >/dev/null; then
    echo "bench.sh: no $python, so the mock workload has no Python lines (PYTHON=path/to/venv/bin/python)" >&2
elif (cd / && "$python" -c 'import cluster') 2>/dev/null; then
    pyargs=(-python "$python" -pybench "$root/bindings/python/bench.py")
else
    echo "bench.sh: $python has no cluster package, so the mock workload has no Python lines" \
        "(pip install ./bindings/python, or PYTHON=path/to/venv/bin/python)" >&2
fi
cd "$here"
./dev.sh go build -o "$tmp/gobench" ./bench/gobench
"$tmp/gobench" -cbench "$tmp/cbench" ${cmock:+-cmock "$cmock"} ${pyargs[@]+"${pyargs[@]}"} "$@"
