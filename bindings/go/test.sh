#!/usr/bin/env bash
# Builds libcluster.a and runs the Go binding's checks and tests: go vet,
# the race detector, the cgo pointer checks (GODEBUG=cgocheck=1 and the
# stricter GOEXPERIMENT=cgocheck2) and a tiny-GOGC run. The cross-language
# test includes the Python member when `import cluster` works (pip install
# ./bindings/python); CLUSTER_XLANG_PYTHON=require makes its absence fail.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
(cd "$here/../.." && cargo build --release --quiet)
source "$here/libid.sh" # rebuild and rerun when libcluster.a changed
cd "$here"
test -z "$(gofmt -l .)" || { gofmt -l .; echo "gofmt: files above need formatting"; exit 1; }
go vet ./...
go test -race -count=1 ./...
GODEBUG=cgocheck=1 go test -count=1 ./...
GOEXPERIMENT=cgocheck2 go test -count=1 ./...
GOGC=1 go test -count=1 ./...
