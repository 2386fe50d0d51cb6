"""The Chromium fixture itself: it renders, runs scripts, resolves nothing but loopback, and
leaves no process behind."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.peers.chromium import Browser, open_browser


def _our_children() -> set[int]:
    me, found = os.getpid(), set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2 :].split()[1]) == me:
                found.add(int(entry.name))
    return found


def test_renders_and_runs_scripts(browser: Browser) -> None:
    driver = browser.driver
    driver.get(  # type: ignore[attr-defined]
        "data:text/html,<p id=p></p><script>document.getElementById('p').textContent=6*7</script>"
    )
    assert driver.find_element("id", "p").text == "42"  # type: ignore[attr-defined]


def test_only_loopback_names_resolve(browser: Browser) -> None:
    from selenium.common.exceptions import WebDriverException

    # the resolver rule answers "not found" itself: no lookup leaves the machine
    with pytest.raises(WebDriverException, match="ERR_NAME_NOT_RESOLVED"):
        browser.driver.get("http://example.com/")  # type: ignore[attr-defined]


def test_leaves_no_process_behind(tmp_path: Path) -> None:
    before = _our_children()
    with open_browser() as browser:
        browser.driver.get("data:text/html,<b>x</b>")  # type: ignore[attr-defined]
        assert browser.screenshot(tmp_path / "x.png").read_bytes().startswith(b"\x89PNG")
        driver_pid = browser.driver_pid
    assert not Path(f"/proc/{driver_pid}").exists()
    assert _our_children() <= before
