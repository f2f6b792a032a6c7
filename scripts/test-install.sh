#!/usr/bin/env bash
# Uses libcluster as someone without this checkout would, and checks that
# nothing installed points into the checkout:
# - C: scripts/install.sh into a temporary prefix; examples/hello.c built
#   with pkg-config seeing that prefix only; SONAME (it matches the header's
#   version macros), no RUNPATH, the .pc's prefix; hello run on loopback
#   with the checkout's target/release moved away. A DESTDIR install lands
#   under DESTDIR with a .pc naming the real prefix.
# - Go: the module's files (as git would publish them) served by a
#   file-based module proxy; tests/install/main.go, written against the
#   original Go API, built in a temporary directory against the install and
#   run, also with target/release moved away; without an install its build
#   fails with pkg-config's message naming cluster.pc.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
tmp=$(mktemp -d)
moved="$root/target/release.moved-by-test-install"
test ! -e "$moved" || { echo "test-install: $moved is left from a run that was killed: move it back to target/release" >&2; exit 1; }
cleanup() {
    if [ -d "$moved" ]; then mv "$moved" "$root/target/release"; fi
    chmod -R u+w "$tmp" # the module cache is read-only
    rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "test-install: $*" >&2; exit 1; }
dynamic() { readelf -d "$1" | sed -n "s/.*($2).*\[\(.*\)\]/\1/p"; }

prefix="$tmp/prefix"
scripts/install.sh --prefix "$prefix" >/dev/null
export PKG_CONFIG_LIBDIR="$prefix/lib/pkgconfig" PKG_CONFIG_PATH=
export LD_LIBRARY_PATH="$prefix/lib"

# The installed library: its SONAME is what the header's version promises.
macro() { sed -n "s/^#define CLUSTER_VERSION_$1 //p" "$prefix/include/cluster.h"; }
major=$(macro MAJOR) minor=$(macro MINOR) patch=$(macro PATCH)
if [ "$major" = 0 ]; then want="libcluster.so.0.$minor"; else want="libcluster.so.$major"; fi
lib="$prefix/lib/libcluster.so.$major.$minor.$patch"
test -f "$lib" || fail "$lib is missing"
test "$(dynamic "$lib" SONAME)" = "$want" || fail "SONAME of $lib: $(dynamic "$lib" SONAME), want $want"
test "$(readlink "$prefix/lib/$want")" = "$(basename "$lib")" || fail "$want does not link to $lib"
test -f "$prefix/lib/libcluster.a" || fail "libcluster.a is missing"
test "$(pkg-config --variable=prefix cluster)" = "$prefix" || fail "cluster.pc's prefix is not $prefix"
test "$(pkg-config --modversion cluster)" = "$major.$minor.$patch" || fail "cluster.pc's version"
if grep -rl "$root" "$prefix/include" "$prefix/lib/pkgconfig"; then fail "the files above name the checkout"; fi

# A DESTDIR install: files under DESTDIR, the .pc names the prefix alone.
DESTDIR="$tmp/stage" scripts/install.sh --no-build --prefix /opt/cluster >/dev/null
test -e "$tmp/stage/opt/cluster/lib/$want" || fail "DESTDIR install: no $want"
test "$(PKG_CONFIG_LIBDIR="$tmp/stage/opt/cluster/lib/pkgconfig" pkg-config --variable=prefix cluster)" \
    = /opt/cluster || fail "DESTDIR install: cluster.pc's prefix is not /opt/cluster"

# The Go module as `go get` would fetch it: the files git publishes under
# its root, in a module zip on a file-based proxy.
mod=github.com/cluster-dev/cluster/bindings/go
ver=v$(sed -n 's/^const Version = "\(.*\)"$/\1/p' bindings/go/version.go)
test "$ver" = "v$major.$minor.$patch" || fail "bindings/go/version.go says $ver, the header $major.$minor.$patch"
proxy="$tmp/proxy/$mod/@v"
mkdir -p "$proxy"
echo "$ver" >"$proxy/list"
echo "{\"Version\": \"$ver\"}" >"$proxy/$ver.info"
cp bindings/go/go.mod "$proxy/$ver.mod"
git ls-files --cached --others --exclude-standard bindings/go | python3 -c '
import os, sys, zipfile
zip_path, prefix = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(zip_path, "w") as z:
    for path in sys.stdin.read().split():
        if os.path.isfile(path) and not os.path.islink(path):
            z.write(path, prefix + path[len("bindings/go/"):])
' "$proxy/$ver.zip" "$mod@$ver/"

app="$tmp/app"
mkdir -p "$app"
cp tests/install/main.go "$app/"
printf 'module example.com/app\n\ngo 1.22\n\nrequire %s %s\n' "$mod" "$ver" >"$app/go.mod"
export GOPROXY="file://$tmp/proxy" GOFLAGS=-mod=mod GOSUMDB=off GOWORK=off
export GOMODCACHE="$tmp/gomodcache" # fresh, so no package built against another prefix is reused

# From here on, the checkout's build tree is out of reach.
mv "$root/target/release" "$moved"

cc -std=c11 -Wall -Wextra -Werror examples/hello.c $(pkg-config --cflags --libs cluster) -o "$tmp/hello"
# Without libcluster the build stops at pkg-config, naming cluster.pc (first:
# the go command would reuse a package built before, as it does not hash
# pkg-config's answer).
mkdir "$tmp/no-pc"
if out=$(cd "$app" && PKG_CONFIG_LIBDIR="$tmp/no-pc" go build -o /dev/null . 2>&1); then
    fail "the Go program built without libcluster"
fi
grep -q "Package cluster was not found" <<<"$out" || { echo "$out"; fail "unexpected message without libcluster"; }
(cd "$app" && go vet . && go build -o "$tmp/app-bin" .)
test -f "$GOMODCACHE/$mod@$ver/LICENSE" || fail "the Go module has no LICENSE"
for exe in "$tmp/hello" "$tmp/app-bin"; do
    test -z "$(dynamic "$exe" RUNPATH)$(dynamic "$exe" RPATH)" || fail "$exe has a RUNPATH"
    dynamic "$exe" NEEDED | grep -x "$want" >/dev/null || fail "$exe does not need $want"
    ldd "$exe" | grep "$want => $prefix/lib/$want" >/dev/null || { ldd "$exe"; fail "$exe loads another $want"; }
done

ports=$(python3 -c 'import socket
socks = [socket.socket() for _ in range(2)]
for s in socks: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])')
set -- $ports
(cd "$tmp" && ./hello "{\"Peers\": [{\"Id\": 1, \"Address\": \"127.0.0.1:$1\"}, {\"Id\": 2, \"Address\": \"127.0.0.1:$2\"}]}")
"$tmp/app-bin"
