"""The wrapper's view of the C ABI matches include/cluster.h."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import cluster
from cluster import _ffi, errors

HEADER = Path(__file__).resolve().parents[3] / "include" / "cluster.h"


def functions(text: str) -> dict:
    """``{name: (return type, [param types])}`` of every prototype in C text."""
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    out = {}
    for ret, name, params in re.findall(r"^\s*([\w ]+?\s*\**)\s*(cluster_\w+)\(([^)]*)\);", text, re.M):
        types = []
        for p in params.split(","):
            p = " ".join(p.replace("struct ", "").split())
            if p == "void":
                continue
            p = re.sub(r"\s*(\w+)$", "", p)  # drop the parameter name
            types.append(p.replace(" *", "*"))
        out[name] = (" ".join(ret.split()).replace(" *", "*"), types)
    return out


def defines(text: str) -> dict:
    """The header's numeric #defines and the members of its status enum."""
    found = re.findall(r"#define (CLUSTER_\w+) (-?\d+)", text)
    found += re.findall(r"^\s+(CLUSTER_\w+) = (-?\d+),$", text, re.M)
    return {k: int(v) for k, v in found}


@pytest.fixture(scope="module")
def header() -> str:
    if not HEADER.is_file():
        pytest.skip("runs from a checkout: include/cluster.h is not beside this package")
    return HEADER.read_text()


def test_every_declared_function_matches_the_header(header):
    ours, theirs = functions(_ffi.CDEF), functions(header)
    assert ours, "no prototype parsed from the cdef"
    for name, sig in ours.items():
        assert name in theirs, f"{name} is not in cluster.h"
        assert sig == theirs[name], name
    missing = set(theirs) - set(ours) - {"cluster_last_error"}  # per-thread; Python uses err
    assert not missing, f"cluster.h functions the wrapper does not declare: {missing}"


def test_structs_match_the_header(header):
    for struct in ("cluster_envelope_t", "cluster_error_t"):
        body = re.search(r"typedef struct %s \{(.*?)\} %s;" % (struct, struct), header, re.S).group(1)
        body = re.sub(r"/\*.*?\*/", "", body, flags=re.S)
        names = re.findall(r"(\w+)(?:\[\w+\])?;", body)
        cffi_names = [f[0] for f in _ffi.ffi.typeof(struct).fields]
        assert names == cffi_names, struct
    assert _ffi.ffi.sizeof("cluster_error_t") == 4 + defines(header)["CLUSTER_ERROR_MESSAGE_LEN"]


def test_constants_and_error_codes_match_the_header(header):
    d = defines(header)
    assert cluster.BROADCAST == d["CLUSTER_BROADCAST"]
    for name in ("CUT_IN", "CUT_OUT", "CUT_BOTH"):
        assert getattr(cluster, name) == d[f"CLUSTER_{name}"]
    codes = {v: k for k, v in d.items() if k.startswith("CLUSTER_E_")}
    assert len(codes) >= 12 and d["CLUSTER_OK"] == 0, "the header's cluster_status_t is read"
    for code, name in codes.items():
        err = errors.error_for(code, "")
        assert err.code == code and err.name == name
        assert str(err) == name  # an empty message falls back to the name
    assert errors.error_for(-9, "m").__class__ is cluster.Closed
    assert type(errors.error_for(-999, "odd")) is cluster.ClusterError


def test_port_compiles_without_warnings(header, tmp_path):
    """cluster/_port.c is clean under -Wall -Wextra -Werror (the install
    itself does not use -Werror, so a newer compiler cannot break it)."""
    import shutil
    import subprocess
    import sysconfig

    cc = shutil.which("cc") or shutil.which("gcc")
    include = sysconfig.get_paths()["include"]
    assert cc is not None and Path(include, "Python.h").is_file(), "needs a C compiler and Python's headers"
    source = Path(__file__).resolve().parents[1] / "cluster" / "_port.c"
    proc = subprocess.run(
        [cc, "-fsyntax-only", "-std=c11", "-Wall", "-Wextra", "-Werror", "-I", str(HEADER.parent), "-I", include, str(source)],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr


def test_no_exported_name_shadows_a_builtin():
    """``from cluster import *`` (and from each module) rebinds no built-in
    name: the I/O error is `ClusterIOError`, not ``IOError``."""
    import builtins
    import importlib

    assert not set(cluster.__all__) & set(dir(builtins))
    for module in ("cluster", "cluster.errors", "cluster.mock", "cluster.node", "cluster.testing"):
        names: dict = {}
        exec(f"from {module} import *", names)
        shadowed = (set(names) - {"__builtins__"}) & set(dir(builtins))
        assert not shadowed, f"from {module} import * shadows {shadowed}"
        importlib.import_module(module)
    exported: dict = {}
    exec("from cluster import *", exported)
    assert set(exported) - {"__builtins__"} == set(cluster.__all__)
    assert "IOError" not in exported and exported["ClusterIOError"] is cluster.ClusterIOError
    assert cluster.IOError is cluster.ClusterIOError  # the former name, for old code
    assert issubclass(cluster.ClusterIOError, OSError)
    assert type(errors.error_for(-5, "io")) is cluster.ClusterIOError
