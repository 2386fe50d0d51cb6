"""One error base per protocol, each error also one of the generic classes of virtrio.errors,
so a caller catches by protocol (``except QmpError``) or by kind (``except CommandError``)."""

from __future__ import annotations

import pytest
import trio

from virtrio.channels.libvirt import (
    DomainNotFoundError,
    DomainXmlError,
    GuestAgentUnavailableError,
    LibvirtCallError,
    LibvirtError,
    LibvirtLocalError,
    LibvirtUnsupportedError,
    LibvirtUriError,
)
from virtrio.channels.messaging import (
    HealthCheckError,
    LengthPrefixError,
    MessagingError,
    MiddlewareError,
)
from virtrio.channels.pty import (
    PtyError,
    PtyLocalProtocolError,
    PtyProtocolError,
    PtyRequestError,
)
from virtrio.channels.qga import QgaCommandError, QgaError, QgaProtocolError
from virtrio.channels.qmp import QmpCommandError, QmpError, QmpProtocolError
from virtrio.channels.spice import (
    SpiceError,
    SpiceLinkError,
    SpicePermissionError,
    SpiceProtocolError,
)
from virtrio.channels.virtio_serial import IncompleteReadError, ReadLimitError, VirtioSerialError
from virtrio.channels.xtransfer import (
    XtransferChecksumError,
    XtransferError,
    XtransferProtocolError,
    XtransferTruncatedError,
)
from virtrio.channels.yamux import (
    SessionLostError,
    StreamResetError,
    YamuxError,
    YamuxProtocolError,
)
from virtrio.errors import (
    ChannelUnavailableError,
    CommandError,
    ConfigError,
    ConnectError,
    ConnectionLostError,
    LocalProtocolError,
    ProtocolError,
    VirtrioError,
    VirtrioTimeoutError,
)
from virtrio.nurseries.host import HostUnavailableError

GENERIC = (
    ConfigError,
    ConnectError,
    ConnectionLostError,
    ProtocolError,
    LocalProtocolError,
    CommandError,
    VirtrioTimeoutError,
)

# (error, its protocol base, the generic kinds it is)
CASES = [
    (QmpProtocolError, QmpError, {ProtocolError}),
    (QmpCommandError, QmpError, {CommandError}),
    (QgaProtocolError, QgaError, {ProtocolError}),
    (QgaCommandError, QgaError, {CommandError}),
    (SpiceProtocolError, SpiceError, {ProtocolError}),
    (SpiceLinkError, SpiceError, {ConnectError}),
    (SpicePermissionError, SpiceError, {ConnectError}),
    (YamuxProtocolError, YamuxError, {ProtocolError}),
    (StreamResetError, YamuxError, {ConnectionLostError}),
    (SessionLostError, YamuxError, {ConnectionLostError}),
    (XtransferChecksumError, XtransferError, {ProtocolError}),
    (XtransferTruncatedError, XtransferError, {ProtocolError}),
    (XtransferProtocolError, XtransferError, {ProtocolError}),
    (LibvirtCallError, LibvirtError, {CommandError}),
    (DomainNotFoundError, LibvirtError, {CommandError}),
    (LibvirtUnsupportedError, LibvirtError, {CommandError, LocalProtocolError}),
    (LibvirtLocalError, LibvirtError, {LocalProtocolError}),
    (GuestAgentUnavailableError, LibvirtError, {VirtrioTimeoutError}),
    (DomainXmlError, LibvirtError, {ProtocolError}),
    (LibvirtUriError, LibvirtError, {ConfigError}),
    (HostUnavailableError, LibvirtError, {VirtrioTimeoutError}),
    (LengthPrefixError, MessagingError, {ProtocolError}),
    (MiddlewareError, MessagingError, {ProtocolError}),
    (HealthCheckError, MessagingError, {ConnectionLostError}),
    (ReadLimitError, VirtioSerialError, {ProtocolError}),
    (IncompleteReadError, VirtioSerialError, {ConnectionLostError}),
    (PtyProtocolError, PtyError, {ProtocolError}),
    (PtyLocalProtocolError, PtyError, {LocalProtocolError}),
    (PtyRequestError, PtyError, {CommandError}),
]


@pytest.mark.parametrize(("error", "base", "kinds"), CASES, ids=[c[0].__name__ for c in CASES])
def test_each_error_has_its_protocol_base_and_its_generic_kinds(
    error: type[Exception], base: type[Exception], kinds: set[type[Exception]]
) -> None:
    assert issubclass(error, base)
    assert issubclass(base, VirtrioError)
    assert not any(issubclass(base, generic) for generic in GENERIC)  # a base is only a base
    assert {generic for generic in GENERIC if issubclass(error, generic)} == kinds


def test_a_reset_stream_is_a_broken_trio_stream_not_a_peer_violation() -> None:
    assert issubclass(StreamResetError, trio.BrokenResourceError)
    assert not issubclass(StreamResetError, ProtocolError)


def test_a_stream_whose_session_ended_is_broken_but_not_reset() -> None:
    assert issubclass(SessionLostError, trio.BrokenResourceError)
    assert not issubclass(SessionLostError, StreamResetError)
    assert not issubclass(StreamResetError, SessionLostError)


def test_a_host_outage_is_still_a_channel_outage() -> None:
    assert issubclass(HostUnavailableError, ChannelUnavailableError)
