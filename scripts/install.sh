#!/usr/bin/env bash
# Installs libcluster for C (and Go through pkg-config) from this checkout:
#
#   scripts/install.sh [--prefix DIR] [--libdir DIR] [--includedir DIR] [--no-build]
#
#   PREFIX/lib/libcluster.so.X.Y.Z   the shared library, SONAME libcluster.so.0.MINOR
#   PREFIX/lib/libcluster.so.0.MINOR (libcluster.so.MAJOR from 1.0 on) and
#   PREFIX/lib/libcluster.so         symlinks, for the loader and for -lcluster
#   PREFIX/lib/libcluster.a          the static library
#   PREFIX/include/cluster.h         the header, with CLUSTER_VERSION_* macros
#   PREFIX/lib/pkgconfig/cluster.pc  prefix-based, no rpath
#
# The prefix defaults to /usr/local; DESTDIR, if set, is prepended to every
# path written (for packaging) but not to the paths inside cluster.pc. It
# builds the release library first (cargo build --release) unless
# --no-build, e.g. `cargo build --release && sudo scripts/install.sh --no-build`.
# Nothing installed points into this checkout.
set -euo pipefail
cd "$(dirname "$0")/.."

prefix=/usr/local libdir= includedir= build=1
while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) prefix="$2"; shift 2 ;;
        --prefix=*) prefix="${1#*=}"; shift ;;
        --libdir) libdir="$2"; shift 2 ;;
        --libdir=*) libdir="${1#*=}"; shift ;;
        --includedir) includedir="$2"; shift 2 ;;
        --includedir=*) includedir="${1#*=}"; shift ;;
        --no-build) build=0; shift ;;
        -h|--help) sed -n '2,17s/^# \{0,1\}//p' "$0"; exit 0 ;;
        *) echo "install.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done
case "$prefix" in /*) ;; *) echo "install.sh: --prefix must be an absolute path" >&2; exit 2 ;; esac
# Kept relative to ${prefix} in cluster.pc when they are the defaults.
pc_libdir="${libdir:-\${prefix\}/lib}" pc_includedir="${includedir:-\${prefix\}/include}"
libdir="${libdir:-$prefix/lib}" includedir="${includedir:-$prefix/include}"

if [ "$build" = 1 ]; then
    cargo build --release --quiet
fi
built=target/release
for f in libcluster.so libcluster.a cluster.pc; do
    test -f "$built/$f" || { echo "install.sh: $built/$f is missing: run cargo build --release" >&2; exit 1; }
done
version=$(sed -n 's/^Version: //p' "$built/cluster.pc")
# build.rs set the SONAME; read it back rather than derive it a second time.
soname=$(readelf -d "$built/libcluster.so" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
test -n "$soname" || { echo "install.sh: $built/libcluster.so has no SONAME" >&2; exit 1; }

dest="${DESTDIR:-}"
install -d "$dest$libdir/pkgconfig" "$dest$includedir"
install -m 0755 "$built/libcluster.so" "$dest$libdir/libcluster.so.$version"
ln -sfn "libcluster.so.$version" "$dest$libdir/$soname"
ln -sfn "$soname" "$dest$libdir/libcluster.so"
install -m 0644 "$built/libcluster.a" "$dest$libdir/libcluster.a"
install -m 0644 include/cluster.h "$dest$includedir/cluster.h"
# The build tree's cluster.pc (build.rs) with the install's paths and no rpath.
sed -e '/^#/d' -e "s|^prefix=.*|prefix=$prefix|" -e "s|^libdir=.*|libdir=$pc_libdir|" \
    -e "s|^includedir=.*|includedir=$pc_includedir|" -e 's|^rpath=.*|rpath=|' \
    "$built/cluster.pc" >"$dest$libdir/pkgconfig/cluster.pc"
chmod 0644 "$dest$libdir/pkgconfig/cluster.pc"

echo "installed libcluster $version ($soname) in ${dest}$prefix"
if [ -z "$dest" ] && [ "$(id -u)" = 0 ] && { [ "$prefix" = /usr/local ] || [ "$prefix" = /usr ]; }; then
    ldconfig # the loader's cache learns the new library
else
    echo "at run time the loader must find $soname in $libdir: ldconfig (for a system" \
        "directory), or LD_LIBRARY_PATH=$libdir"
fi
