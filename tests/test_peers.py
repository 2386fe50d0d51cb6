"""The fixtures' peers die with the test process (a crashed pytest leaves nothing running)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.peers import dies_with_tests

ROOT = Path(__file__).resolve().parent.parent

#: a stand-in for pytest: starts a peer the way the fixtures do, prints its pid, then waits
_TEST_PROCESS = """
import subprocess, sys, time
from tests.peers import dies_with_tests
peer = subprocess.Popen(dies_with_tests(["sleep", "300"]))
print(peer.pid, flush=True)
time.sleep(300)
"""


def _cmdline(pid: int, timeout: float = 10.0) -> list[bytes]:
    """The peer's command line once it has exec'd its program (through setpriv)."""
    deadline = time.monotonic() + timeout
    while True:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        if argv[0] == b"sleep" or time.monotonic() > deadline:
            return argv
        time.sleep(0.001)


def _gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return True
        if state == "Z":  # dead, waiting for init to reap it
            return True
        time.sleep(0.01)
    return False


def test_a_peer_gets_sigkill_when_the_test_process_is_killed() -> None:
    tester = subprocess.Popen(
        [sys.executable, "-c", _TEST_PROCESS], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    assert tester.stdout is not None
    peer = int(tester.stdout.readline())
    try:
        assert _cmdline(peer)[:2] == [b"sleep", b"300"]
        tester.send_signal(signal.SIGKILL)
        tester.wait()
        assert _gone(peer)
    finally:
        tester.kill()
        tester.wait()
        tester.stdout.close()
        if not _gone(peer, timeout=0):
            os.kill(peer, signal.SIGKILL)


def test_a_start_from_a_worker_thread_is_left_unwrapped() -> None:
    # the death signal follows the forking thread: a worker thread may exit before its peer
    got: list[list[str]] = []
    worker = threading.Thread(target=lambda: got.append(dies_with_tests(["sleep", "1"])))
    worker.start()
    worker.join()
    assert got == [["sleep", "1"]]
    assert dies_with_tests(["sleep", "1"])[-3:] == ["--", "sleep", "1"]
