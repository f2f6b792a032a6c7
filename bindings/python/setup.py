"""Builds libcluster with cargo and ships it inside the `cluster` package.

Two layouts are built the same way:
- a checkout: `pip install ./bindings/python` builds the crate two levels up;
- an sdist: `python -m build --sdist bindings/python` copies the crate (its
  sources, Cargo.toml, Cargo.lock, the header, LICENSE) into the sdist's
  `rust/` folder, so installing the sdist needs cargo and nothing else.

`cargo build --release --lib` runs in the crate, and the resulting
libcluster.so is copied next to the package's modules, stripped, where
`cluster._ffi` opens it (no LD_LIBRARY_PATH). The send and receive paths
(`cluster._port`, in C) are compiled too: a C compiler and Python's
headers are required. CLUSTER_REPO builds another checkout;
CARGO_TARGET_DIR is honoured as cargo honours it.
"""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist
from setuptools.dist import Distribution

HERE = Path(__file__).resolve().parent

# What of the crate an sdist carries: enough for `cargo build --lib`.
# (Cargo.toml's explicit target paths are added: cargo reads them all.)
CRATE_FILES = ["Cargo.toml", "Cargo.lock", "build.rs", "cbindgen.toml", "LICENSE", "include/cluster.h"]
CRATE_DIRS = ["src"]


def crate_root() -> Path:
    """The crate to build: $CLUSTER_REPO, else the sdist's copy, else the checkout."""
    candidates = [Path(os.environ["CLUSTER_REPO"])] if os.environ.get("CLUSTER_REPO") else []
    candidates += [HERE / "rust", HERE.parent.parent]
    for root in candidates:
        if (root / "Cargo.toml").is_file():
            return root
    raise SystemExit(
        f"cluster: no Cargo.toml in {' or '.join(map(str, candidates))}; build from an sdist, "
        "from the repository (pip install ./bindings/python), or set CLUSTER_REPO to a checkout"
    )


def crate_version(root: Path) -> str:
    """The version in the crate's Cargo.toml: the one version of the project."""
    text = (root / "Cargo.toml").read_text()
    package = text.split("[package]", 1)[1].split("\n[", 1)[0]
    m = re.search(r'^version\s*=\s*"([^"]+)"', package, re.M)
    if m is None:
        raise SystemExit(f"cluster: no version in {root / 'Cargo.toml'}")
    return m.group(1)


def build_library() -> Path:
    """Runs cargo and returns the path of the built libcluster.so."""
    root = crate_root()
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
    """build_py that also places libcluster.so, stripped, inside the package."""

    def run(self) -> None:
        super().run()
        lib = build_library()
        dest = Path(self.build_lib) / "cluster" / "libcluster.so"
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(lib, dest)
        # The release profile keeps line tables for profiling; a user's copy
        # needs only the exported symbols (8.5 MB -> under 1 MB).
        strip = shutil.which("strip")
        if strip is not None:
            subprocess.run([strip, "--strip-unneeded", str(dest)], check=True)


class SdistWithCrate(sdist):
    """sdist that carries the Rust crate in `rust/`, so it builds with cargo alone."""

    def make_release_tree(self, base_dir: str, files: list) -> None:
        super().make_release_tree(base_dir, files)
        root = crate_root()
        dest = Path(base_dir) / "rust"
        targets = re.findall(r'^path\s*=\s*"([^"]+)"', (root / "Cargo.toml").read_text(), re.M)
        for name in CRATE_FILES + targets:
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(root / name, dest / name)
        for name in CRATE_DIRS:
            shutil.copytree(root / name, dest / name, ignore=shutil.ignore_patterns("target", "build", "*.o"))


class BinaryDistribution(Distribution):
    """The wheel holds a native library, so it is tagged for this platform."""

    def has_ext_modules(self) -> bool:
        return True


# The send and receive paths, in C (cluster/_port.c): it opens the
# libcluster.so that cffi opened and calls it by the header's prototypes.
port = Extension(
    "cluster._port",
    sources=["cluster/_port.c"],
    include_dirs=[str(crate_root() / "include")],
    libraries=["dl"],
    # -Werror is for the test suite (tests/test_abi.py), not for users' compilers.
    extra_compile_args=["-O2"],
)

setup(
    version=crate_version(crate_root()),
    cmdclass={"build_py": BuildPyWithLibrary, "sdist": SdistWithCrate},
    distclass=BinaryDistribution,
    ext_modules=[port],
)
