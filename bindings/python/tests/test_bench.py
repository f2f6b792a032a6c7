"""bench.py's one-run mock mode, which the Go bench runs for its Python lines."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench.py"


def test_mock_once_prints_a_result_every_message_checked() -> None:
    for mode in ("send", "send_many"):
        out = subprocess.run([sys.executable, str(BENCH), "--mock-once", mode, "300"],
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        word, rate, cpu = out.stdout.split()
        assert word == "result" and float(rate) > 0 and float(cpu) > 0


def test_mock_once_refuses_a_bad_mode_or_count() -> None:
    for args in (["shout", "10"], ["send", "x"], ["send", "0"]):
        out = subprocess.run([sys.executable, str(BENCH), "--mock-once", *args],
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 2 and "--mock-once" in out.stderr, args
