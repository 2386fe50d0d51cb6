"""The messaging tests' fixtures (every test over TCP and Unix, and every transport)."""

from tests.channels.messaging.conftest import listen_address, transport

__all__ = ["listen_address", "transport"]
