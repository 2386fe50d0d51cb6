"""One error hierarchy for all of virtrio (feature V1).

Every error virtrio raises derives from :class:`VirtrioError` and says what was being done and
to what address, so a log line alone is enough to act on. The families:

* :class:`ConfigError` — the caller gave something invalid (a bad address, an option out of
  range). Also a :class:`ValueError`.
* :class:`ConnectError` — a connection could not be made (refused, no such socket, timed out).
* :class:`ConnectionLostError` — an established connection went away; every call pending on it
  fails with this, promptly.
* :class:`ProtocolError` — the peer sent something that breaks the protocol (remote), and
  :class:`LocalProtocolError` — we were asked to do something the protocol forbids (local).
* :class:`CommandError` — the peer understood a command and answered it with an error (a QMP or
  guest-agent error reply); carries the error class, description and the command.
* :class:`VirtrioTimeoutError` — a deadline passed. Also a :class:`TimeoutError`.
* :class:`ChannelUnavailableError` — a supervised channel stayed down past a call's deadline.

Each protocol has one base of its own, defined beside it, and every error of the protocol is
both that base and one of the families above (multiple inheritance), so a caller catches by
protocol or by kind::

    QmpError         QmpProtocolError (ProtocolError), QmpCommandError (CommandError)
    QgaError         QgaProtocolError (ProtocolError), QgaCommandError (CommandError)
    SpiceError       SpiceProtocolError (ProtocolError), SpiceLinkError (ConnectError), ...
    YamuxError       YamuxProtocolError (ProtocolError), StreamResetError (ConnectionLostError:
                     a reset stream is not a protocol violation), SessionLostError
                     (ConnectionLostError: the stream's whole session ended)
    XtransferError   XtransferProtocolError (ProtocolError) and its specific kinds
    LibvirtError     LibvirtCallError (CommandError: libvirt answered a call with an error),
                     DomainXmlError (ProtocolError), LibvirtUriError (ConfigError), ...
    MessagingError   LengthPrefixError, MiddlewareError (ProtocolError), HealthCheckError
    VirtioSerialError ReadLimitError (ProtocolError), IncompleteReadError
    PtyError         PtyProtocolError (ProtocolError), PtyLocalProtocolError, PtyRequestError
                     (CommandError: the daemon's error reply)

``except QmpError`` catches everything QMP raises of its own; ``except CommandError`` catches
every error reply, whichever protocol carried it.

Whether an error is worth a retry is one rule, :func:`virtrio.primitives.is_transient`: a
:class:`PermanentError` never is. Its families are :class:`ConfigError`,
:class:`AuthenticationError` (a wrong password, a permission denied) and
:class:`UnsupportedVersionError` (a protocol version the peer refuses); a supervised channel
that meets one stops in the FAILED state instead of reconnecting.

"""

from __future__ import annotations

__all__ = [
    "AuthenticationError",
    "ChannelUnavailableError",
    "CommandError",
    "ConfigError",
    "ConnectError",
    "ConnectionLostError",
    "LocalProtocolError",
    "PermanentError",
    "ProtocolError",
    "UnsupportedVersionError",
    "VirtrioError",
    "VirtrioTimeoutError",
]


class VirtrioError(Exception):
    """Base of every error virtrio raises."""


class PermanentError(VirtrioError):
    """A failure that retrying cannot cure: the same attempt would fail the same way.

    A marker base: a supervisor stops a channel that fails with one (state FAILED) and every
    call through the channel's handle raises it at once. Subclass it (with another base of the
    hierarchy) to mark an error of your own as permanent.
    """


class ConfigError(PermanentError, ValueError):
    """Invalid configuration or argument given by the caller (an address, an option, a URI)."""


class ConnectError(VirtrioError, OSError):
    """A connection to ``address`` could not be established.

    Attributes:
        address: the address (as text) that was being connected to.
    """

    def __init__(self, message: str, *, address: str) -> None:
        super().__init__(message)
        self.address = address


class AuthenticationError(PermanentError):
    """The peer refused our credentials or denied us access (a wrong Spice password, a libvirt
    authentication failure). Permanent: retrying with the same credentials cannot succeed."""


class UnsupportedVersionError(PermanentError):
    """The peer speaks a protocol version we do not, or refuses ours. Permanent."""


class ConnectionLostError(VirtrioError):
    """An established connection closed or failed while it was in use.

    Attributes:
        address: the peer's address, if known.
    """

    def __init__(self, message: str, *, address: str | None = None) -> None:
        super().__init__(message)
        self.address = address


class ProtocolError(VirtrioError):
    """The peer sent data that violates the protocol (a remote error).

    The connection it came on can no longer be trusted and is closed; other connections are
    untouched.
    """


class LocalProtocolError(VirtrioError):
    """The caller asked for something the protocol or the connection's state forbids."""


class CommandError(VirtrioError):
    """The peer answered ``command`` with an error reply.

    Attributes:
        error_class: the peer's error class (QMP's ``GenericError``, ``CommandNotFound``, ...).
        desc: the peer's human-readable description.
        command: the command that failed.
    """

    def __init__(self, error_class: str, desc: str, *, command: str) -> None:
        super().__init__(f"{command}: {error_class}: {desc}")
        self.error_class = error_class
        self.desc = desc
        self.command = command


class VirtrioTimeoutError(VirtrioError, TimeoutError):
    """A deadline passed; the message says what was being waited for."""


class ChannelUnavailableError(VirtrioTimeoutError):
    """A supervised channel was not connected within the call's deadline.

    Attributes:
        last_error: the error that took the channel down, if any.
    """

    def __init__(self, message: str, *, last_error: BaseException | None = None) -> None:
        super().__init__(message)
        self.last_error = last_error
