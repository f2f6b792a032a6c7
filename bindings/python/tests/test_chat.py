"""The chat example: two processes, driven through pipes."""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
from pathlib import Path
from typing import List

from conftest import make_config

CHAT = Path(__file__).resolve().parent.parent / "examples" / "chat.py"


class Chat:
    """One chat process; its stdout lines are collected by a thread."""

    def __init__(self, pid: int, config: str, cwd: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(CHAT), str(pid), config],
            cwd=cwd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.stdin, self.stdout = self.proc.stdin, self.proc.stdout
        self.lines: "queue.Queue[str]" = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.stdout:
            self.lines.put(line.rstrip("\n"))

    def say(self, text: str) -> None:
        self.stdin.write(text + "\n")
        self.stdin.flush()

    def expect(self, wanted: str, timeout: float = 20) -> None:
        """Waits for a line equal to ``wanted``; fails after ``timeout`` s."""
        seen: List[str] = []
        while True:
            try:
                line = self.lines.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"never saw {wanted!r}; saw {seen}") from None
            if line == wanted:
                return
            seen.append(line)

    def quit(self) -> int:
        self.stdin.close()
        try:
            return self.proc.wait(timeout=20)
        finally:
            self.proc.kill()


def test_lines_typed_in_one_chat_appear_in_the_other(tmp_path):
    config = json.dumps(make_config([1, 2]))
    one, two = Chat(1, config, tmp_path), Chat(2, config, tmp_path)
    try:
        one.expect("chat: node 1, peers [2]; type lines, Ctrl-D to quit")
        two.expect("chat: node 2, peers [1]; type lines, Ctrl-D to quit")
        one.say("hello from one")
        two.expect("[1] hello from one")
        two.say("h\u00e9llo back")
        one.expect("[2] h\u00e9llo back")
        for i in range(20):
            one.say(f"line {i}")
        for i in range(20):
            two.expect(f"[1] line {i}")
    finally:
        assert one.quit() == 0
        assert two.quit() == 0


def test_chat_reports_a_bad_config(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(CHAT), "3", json.dumps(make_config([1, 2]))],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 1 and "own id 3" in proc.stderr
