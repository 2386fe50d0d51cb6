"""Headless Chromium for the browser tests: Debian's ``chromium`` driven by its ``chromedriver``
through Selenium's WebDriver client.

Selenium is pointed explicitly at ``/usr/bin/chromedriver`` and ``/usr/bin/chromium``, so
Selenium Manager never runs (it would download a driver). The browser gets a fresh profile in
a temp dir and a host resolver that maps every name except ``127.0.0.1`` and ``localhost`` to
"not found", with background networking, component updates, sync and the like switched off:
the pages under test reach only the loopback servers the tests start. chromedriver listens on
a free 127.0.0.1 port and runs in its own session. Chromium double-forks its zygotes and crash
handler, which would end as zombies of PID 1 (it does not reap orphans here): while a browser
runs, the test process is a child subreaper (``PR_SET_CHILD_SUBREAPER``), and teardown quits
the browser, stops the driver (reaped by Selenium's ``Service``), then kills and reaps every
orphan of the driver's session that came to it::

    def test_page(browser: Browser) -> None:
        browser.driver.get("http://127.0.0.1:PORT/")
        browser.screenshot(tmp_path / "page.png")
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

from . import INSTALL_HINT

__all__ = ["CHROMEDRIVER", "CHROMIUM", "Browser", "open_browser"]

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")

#: Chromium switches: headless, as root in a container, and nothing but loopback on the network
FLAGS = (
    "--headless=new",
    "--no-sandbox",  # the tests run as root, where Chromium's sandbox refuses to start
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--disable-domain-reliability",
    "--disable-client-side-phishing-detection",
    "--disable-features=Translate,OptimizationHints,MediaRouter,AutofillServerCommunication",
    "--metrics-recording-only",
    "--disable-crash-reporter",
    "--disable-breakpad",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost",
    "--window-size=1280,900",
)


@attrs.define
class Browser:
    """A running headless Chromium and its WebDriver session."""

    driver: object  # selenium.webdriver.Chrome (typed loosely: selenium is a test-only import)
    profile: Path
    driver_pid: int

    def screenshot(self, path: Path) -> Path:
        """Save a PNG of the viewport at ``path``."""
        assert self.driver.save_screenshot(str(path))  # type: ignore[attr-defined]
        return path


PR_SET_CHILD_SUBREAPER = 36


def _set_subreaper(on: bool) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, int(on), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def _orphans_of_session(sid: int) -> list[int]:
    """Our children (adopted orphans included) in session ``sid``, or Chromium's crash
    handlers (which start a session of their own)."""
    me, found = os.getpid(), []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid pgrp session ...; comm may hold spaces and parentheses
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[1]) == me and (int(fields[3]) == sid or comm.startswith("chrome_crashpad")):
            found.append(int(entry.name))
    return found


def _reap_session(sid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(sid, signal.SIGKILL)  # a wedged renderer still in the driver's group
    for pid in _orphans_of_session(sid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)


def _require() -> None:
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not path.exists():
            pytest.fail(f"{path} not found: apt-get install {package} ({INSTALL_HINT})")
    try:
        import selenium  # noqa: F401
    except ImportError:
        pytest.fail(f"selenium is not installed ({INSTALL_HINT})")


@contextlib.contextmanager
def open_browser() -> Iterator[Browser]:
    """Start chromedriver and a headless Chromium; always quit, stop and reap both."""
    _require()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = Path(tempfile.mkdtemp(prefix="vtchrome-", dir="/tmp"))
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    # the page's console messages, for failure reports
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(
        executable_path=str(CHROMEDRIVER),
        service_args=["--allowed-ips=127.0.0.1", "--log-level=WARNING"],
        log_output=str(profile / "chromedriver.log"),
        popen_kw={"start_new_session": True},
    )
    _set_subreaper(True)
    driver = None
    try:
        driver = webdriver.Chrome(options=options, service=service)
        process = service.process
        assert process is not None
        yield Browser(driver, profile, process.pid)
    finally:
        sid = service.process.pid if service.process is not None else None
        try:
            if driver is not None:
                driver.quit()  # closes the browser, then stops chromedriver and reaps it
        finally:
            service.stop()
            if sid is not None:
                _reap_session(sid)
            _set_subreaper(False)
            shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def browser() -> Iterator[Browser]:
    """A fresh headless Chromium for one test (see the module docstring)."""
    with open_browser() as started:
        yield started
