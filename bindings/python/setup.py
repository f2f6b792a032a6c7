"""Builds libcluster with cargo and ships it inside the `cluster` package.

`pip install ./bindings/python` (from the repository root) runs this: it calls
`cargo build --release --lib` in the repository two levels up, then copies the
resulting libcluster.so next to the package's modules, where `cluster._ffi`
opens it, so no LD_LIBRARY_PATH is needed. It also compiles the optional C
hot paths (`cluster._speedups`); without a compiler or Python's headers the
package works without them. Set CLUSTER_REPO to build from another checkout.
"""

import json
import os
import shutil
import subprocess
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution

HERE = Path(__file__).resolve().parent


def repo_root() -> Path:
    root = Path(os.environ.get("CLUSTER_REPO", HERE.parent.parent))
    if not (root / "Cargo.toml").is_file():
        raise SystemExit(
            f"cluster: no Cargo.toml in {root}; install from the repository "
            "(pip install ./bindings/python) or set CLUSTER_REPO to its root"
        )
    return root


def build_library() -> Path:
    """Runs cargo and returns the path of the built libcluster.so."""
    root = repo_root()
    if shutil.which("cargo") is None:
        raise SystemExit("cluster: 'cargo' is required to build libcluster (install Rust with rustup)")
    cmd = ["cargo", "build", "--release", "--lib", "--message-format=json-render-diagnostics"]
    proc = subprocess.run(cmd, cwd=root, stdout=subprocess.PIPE, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"cluster: `{' '.join(cmd)}` failed in {root}")
    for line in proc.stdout.decode().splitlines():
        msg = json.loads(line)
        if msg.get("reason") == "compiler-artifact" and msg["target"]["name"] == "cluster":
            for f in msg.get("filenames", []):
                if f.endswith(".so"):
                    return Path(f)
    raise SystemExit("cluster: cargo built no libcluster.so")


class BuildPyWithLibrary(build_py):
    """build_py that also places libcluster.so inside the package."""

    def run(self) -> None:
        super().run()
        lib = build_library()
        dest = Path(self.build_lib) / "cluster" / "libcluster.so"
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(lib, dest)


class BinaryDistribution(Distribution):
    """The wheel holds a native library, so it is tagged for this platform."""

    def has_ext_modules(self) -> bool:
        return True


# The C hot paths: optional, so a machine without Python's headers still gets
# a working (slower) package that calls libcluster through cffi alone.
speedups = Extension(
    "cluster._speedups",
    sources=["cluster/_speedups.c"],
    include_dirs=[str(HERE.parent.parent / "include")],
    # -Werror is for the test suite (tests/test_abi.py), not for users' compilers.
    extra_compile_args=["-O2"],
    optional=True,
)

setup(
    cmdclass={"build_py": BuildPyWithLibrary},
    distclass=BinaryDistribution,
    ext_modules=[speedups],
)
