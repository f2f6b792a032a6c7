"""Interpreter exit with nodes still open, threads blocked in them, and a mock."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import cluster
from conftest import make_config

SCRIPT = textwrap.dedent(
    """
    import json, sys, threading, cluster
    cfg = json.loads(sys.argv[1])

    def wait(node):
        try:
            node.recv()
        except cluster.Closed:
            print("woke with Closed", flush=True)

    a, b = cluster.Node(1, cfg), cluster.Node(2, cfg)
    mock = cluster.MockCluster(cfg)
    for node in (a, mock.servers[1]):
        threading.Thread(target=wait, args=(node,), daemon=True).start()
    a.send(2, "queued at exit")
    a._leak = a  # a cycle: collected, if ever, during finalization
    print("exiting", flush=True)
    """
)


def test_exit_with_open_nodes_and_blocked_threads_is_clean(tmp_path):
    script = tmp_path / "exit.py"
    script.write_text(SCRIPT)
    proc = subprocess.run(
        [sys.executable, "-W", "error::ResourceWarning", str(script), json.dumps(make_config([1, 2]))],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("exiting")
    assert "Traceback" not in proc.stderr and "Fatal" not in proc.stderr


def test_the_package_ships_its_library_and_type_marker():
    here = Path(cluster.__file__).resolve().parent
    assert (here / "py.typed").is_file()
    lib = cluster._ffi._find_library()
    assert Path(lib).is_file()
    if "site-packages" in str(here):  # installed: the library is inside the package
        assert Path(lib).resolve().parent == here
