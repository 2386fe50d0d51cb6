"""libvirt's error codes in virtrio's hierarchy: what a supervisor may retry and what not."""

from __future__ import annotations

import attrs
import pytest

from virtrio.channels.libvirt import LibvirtAuthenticationError
from virtrio.channels.libvirt._errors import translate_error
from virtrio.errors import AuthenticationError, ConnectError
from virtrio.primitives import is_transient


@attrs.frozen
class Reported:
    """What a ``libvirt.libvirtError`` reports (its constructor reads libvirt's last error, so
    a chosen code cannot be put into a real one)."""

    code: int
    domain: int
    message: str

    def get_error_code(self) -> int:
        return self.code

    def get_error_domain(self) -> int:
        return self.domain

    def get_error_message(self) -> str:
        return self.message


@pytest.mark.parametrize("code", [45, 54, 79, 88, 94])
def test_an_authentication_failure_while_connecting_is_permanent(code: int) -> None:
    error = translate_error(
        Reported(code, 7, "authentication failed"), "connect", uri="qemu:///system", connecting=True
    )
    assert isinstance(error, LibvirtAuthenticationError)
    assert isinstance(error, AuthenticationError)
    assert isinstance(error, ConnectError)
    assert not is_transient(error)


def test_a_refused_connect_stays_transient() -> None:
    error = translate_error(
        Reported(38, 7, "Failed to connect socket: Connection refused"),
        "connect",
        uri="qemu:///system",
        connecting=True,
    )
    assert type(error) is ConnectError
    assert is_transient(error)
