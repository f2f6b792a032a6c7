#!/usr/bin/env bash
# Runs a command against this checkout's libcluster, rebuilt first, e.g.
#   ./dev.sh go test ./...        ./dev.sh go run ./examples/chat 1
# (test.sh and bench.sh run through it). pkg-config then finds the build
# tree's cluster.pc (build.rs writes it in target/release), which links
# target/release/libcluster.so with an rpath to it and includes the
# checkout's include/cluster.h. The go command hashes neither pkg-config's
# output, nor a header outside the module, nor the library, so CGO_CFLAGS
# gets a define naming their hash: when either changes, the cgo package is
# rebuilt and the tests rerun instead of reporting a cached result.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
(cd "$root" && cargo build --release --quiet)
export PKG_CONFIG_PATH="$root/target/release${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
id=$(cat "$root/target/release/libcluster.so" "$root/include/cluster.h" | sha256sum | cut -c1-32)
CGO_CFLAGS="$(printf '%s' "${CGO_CFLAGS:--g -O2}" | sed 's/ *-DCLUSTER_LIB_ID=[0-9a-f]*//g')"
export CGO_CFLAGS="$CGO_CFLAGS -DCLUSTER_LIB_ID=$id"
exec "$@"
