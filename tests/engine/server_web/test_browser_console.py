"""The browser console end to end: a real ``virtrio serve``, headless Chromium, a real QEMU.

Log in with a developer key, create a session from a board template, upload and start the
bare-metal test program, see its UART greeting appear in the xterm.js console and keys typed
in it echoed by the program; then stop the CPU and read its registers. Waits are
MutationObservers in the page (no polling).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.engine.server.conftest import Served, create_key, start_server, stop_server
from tests.peers.chromium import Browser
from tests.peers.programs import BareMetalProgram

pytestmark = pytest.mark.slow

#: where ``virtrio serve`` serves the static directory of the console
CONSOLE_PATH = "/console/"

#: resolves once ``arguments[0]`` (a JS expression) is truthy, re-checked on every DOM change
WAIT_JS = """
const condition = new Function("return (" + arguments[0] + ");");
const done = arguments[arguments.length - 1];
const check = () => { try { return Boolean(condition()); } catch (e) { return false; } };
if (check()) { done(true); return; }
const observer = new MutationObserver(() => {
  if (check()) { observer.disconnect(); done(true); }
});
observer.observe(document.documentElement,
                 {subtree: true, childList: true, characterData: true, attributes: true});
"""


def _wait(browser: Browser, condition: str, what: str, timeout: float = 90.0) -> None:
    from selenium.common.exceptions import TimeoutException

    driver = browser.driver
    driver.set_script_timeout(timeout)  # type: ignore[attr-defined]
    try:
        driver.execute_async_script(WAIT_JS, condition)  # type: ignore[attr-defined]
    except TimeoutException:
        status = driver.find_element("id", "status").text  # type: ignore[attr-defined]
        logs = driver.get_log("browser")  # type: ignore[attr-defined]
        pytest.fail(
            f"no {what} within {timeout} s; status line {status!r}; "
            f"browser log {json.dumps(logs)[:2000]}"
        )


@pytest.fixture
def served_console(tmp_path: Path) -> Iterator[Served]:
    """A ``virtrio serve`` of its own with one developer key."""
    data_dir = tmp_path / "server"
    key = create_key(data_dir, "developer")
    server = start_server(data_dir)
    server.keys["developer"] = key
    try:
        yield server
    finally:
        assert stop_server(server) == 0


def _by_id(browser: Browser, element_id: str) -> object:
    return browser.driver.find_element("id", element_id)  # type: ignore[attr-defined]


def test_log_in_create_a_session_and_see_the_uart(
    served_console: Served,
    browser: Browser,
    bare_metal_program: Callable[[str], BareMetalProgram],
    tmp_path: Path,
) -> None:
    from selenium.webdriver.support.ui import Select

    program = bare_metal_program("cortex-m3")
    driver = browser.driver
    driver.get(served_console.url + CONSOLE_PATH)  # type: ignore[attr-defined]

    # a wrong key is refused on the page, and nothing else opens
    _by_id(browser, "api-key").send_keys("vk_not-a-key")  # type: ignore[attr-defined]
    _by_id(browser, "login").click()  # type: ignore[attr-defined]
    _wait(browser, "document.getElementById('login-error').textContent !== ''", "login error")
    assert _by_id(browser, "app-view").is_displayed() is False  # type: ignore[attr-defined]

    _by_id(browser, "api-key").clear()  # type: ignore[attr-defined]
    _by_id(browser, "api-key").send_keys(served_console.keys["developer"])  # type: ignore[attr-defined]
    _by_id(browser, "login").click()  # type: ignore[attr-defined]
    _wait(browser, "!document.getElementById('app-view').hidden", "sessions view")
    _wait(browser, "document.getElementById('create-board').options.length > 0", "board list")

    Select(_by_id(browser, "create-board")).select_by_value("lm3s6965evb")
    Select(_by_id(browser, "create-backend")).select_by_value("qemu")
    _by_id(browser, "create").click()  # type: ignore[attr-defined]
    _wait(
        browser,
        "document.getElementById('session-state').textContent === 'running'",
        "running session",
    )
    session_id = _by_id(browser, "session-id").text  # type: ignore[attr-defined]
    assert session_id.startswith("s-")
    _wait(browser, f"document.querySelector('#sessions tr[data-id=\"{session_id}\"]')", "row")
    _wait(
        browser,
        "document.getElementById('console-status').textContent === 'connected'",
        "console socket",
    )

    _by_id(browser, "program-file").send_keys(str(program.elf))  # type: ignore[attr-defined]
    _by_id(browser, "program-start").click()  # type: ignore[attr-defined]
    greeting = "virtrio bare-metal cortex-m3: hello"
    _wait(
        browser,
        f"document.querySelector('#terminal .xterm-rows').textContent.includes({greeting!r})",
        "UART greeting in the console",
    )
    # keys typed in the console reach the UART: the program echoes them back
    typed = "typed-in-the-browser"
    driver.find_element("css selector", "#terminal .xterm-helper-textarea").send_keys(typed)  # type: ignore[attr-defined]
    _wait(
        browser,
        f"document.querySelector('#terminal .xterm-rows').textContent.includes({typed!r})",
        "typed keys echoed in the console",
    )
    browser.screenshot(tmp_path / "console.png")

    # stop the CPU: the page reads the registers of the stopped core
    _by_id(browser, "interrupt").click()  # type: ignore[attr-defined]
    _wait(browser, "document.querySelectorAll('#registers tr').length > 0", "registers")
    names = [
        cell.text
        for cell in driver.find_elements("css selector", "#registers th")  # type: ignore[attr-defined]
    ]
    assert "pc" in names
    browser.screenshot(tmp_path / "registers.png")
    # lm3s6965evb has its OLED: the screen pane shows QEMU's screendump of it
    assert _by_id(browser, "screen-none").text == ""  # type: ignore[attr-defined]
    _by_id(browser, "screenshot").click()  # type: ignore[attr-defined]
    _wait(
        browser,
        "!document.getElementById('screen').hidden"
        " && document.getElementById('screen').naturalWidth > 0",
        "the board's screenshot",
    )
