# Sourced by test.sh and bench.sh after libcluster.a is built. cgo links
# target/release/libcluster.a through #cgo LDFLAGS, and the go command does
# not hash files named there: after the library changes, `go build` keeps a
# binary linked with the old one, and `go test` without -count=1 reports a
# cached result. A define naming the archive's hash in CGO_CFLAGS changes
# the cgo packages' action ids whenever the archive changes, so the go
# command rebuilds and relinks (and a library seen before hits the cache).
# Sourced again (after a rebuild), it replaces the define it added before.
lib="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/target/release/libcluster.a"
CGO_CFLAGS="$(printf '%s' "${CGO_CFLAGS:--g -O2}" | sed 's/ *-DCLUSTER_LIB_ID=[0-9a-f]*//g')"
CGO_CFLAGS="$CGO_CFLAGS -DCLUSTER_LIB_ID=$(sha256sum "$lib" | cut -c1-32)"
export CGO_CFLAGS
