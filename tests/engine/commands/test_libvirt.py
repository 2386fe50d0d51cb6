"""``virtrio libvirt URI ...`` on the test driver (the real-daemon half is in test_daemon)."""

from __future__ import annotations

import pytest

from virtrio.engine._cli import main


def test_domains(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["libvirt", "test:///default", "domains"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["ID", "NAME", "STATE"]
    assert out[1].split() == ["1", "test", "running"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["qemu+ssh:///system", "domains"], "transport 'ssh' needs a host"),
        (["test:///default", "qmp", "test", "query-status"], "not supported"),
        (["test:///default", "qmp", "test"], "needs a COMMAND"),
        (["test:///default", "qga", "test", "guest-ping", "[1]"], "must be a JSON object"),
        (["test:///default", "qga", "test", "guest-ping", "{"], "not JSON"),
        (["test:///default", "channels", "nope"], "Domain not found"),
    ],
)
def test_errors_are_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["libvirt", *argv]) == 1
    err = capsys.readouterr().err
    assert err.startswith("virtrio: error: ")
    assert message in err
