"""The backend layer's errors: one family per way a backend call fails, all BackendError."""

from __future__ import annotations

import pytest

from virtrio.engine.backends import (
    BackendCommandError,
    BackendError,
    BackendExitedError,
    BackendStartError,
    BackendStateError,
    BackendUnavailableError,
    Capability,
    UnsupportedCapabilityError,
)
from virtrio.errors import ConfigError, LocalProtocolError, PermanentError, VirtrioError

FAMILIES = [
    BackendUnavailableError,
    BackendStartError,
    BackendExitedError,
    BackendCommandError,
    BackendStateError,
]


@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_is_a_backend_error_naming_its_backend(family: type[BackendError]) -> None:
    error = family("it went wrong", backend="qemu")
    assert isinstance(error, BackendError)
    assert isinstance(error, VirtrioError)
    assert error.backend == "qemu"
    assert str(error) == "qemu: it went wrong"


def test_what_each_family_is_besides() -> None:
    # not installed: fixing the machine's setup is the way out, so it is a ConfigError too
    assert issubclass(BackendUnavailableError, ConfigError)
    assert issubclass(BackendUnavailableError, PermanentError)
    # refused locally, nothing sent: like every channel's LocalProtocolError
    assert issubclass(BackendStateError, LocalProtocolError)
    assert issubclass(UnsupportedCapabilityError, BackendStateError)
    for family in (BackendStartError, BackendExitedError, BackendCommandError):
        assert not issubclass(family, (ConfigError, LocalProtocolError))


def test_an_unsupported_capability_is_a_state_error_of_its_backend() -> None:
    error = UnsupportedCapabilityError(
        Capability.SNAPSHOTS, backend="renode", doing="create_snapshot", reason="not here"
    )
    assert isinstance(error, BackendStateError)
    assert error.capability is Capability.SNAPSHOTS
    assert "create_snapshot needs capability 'snapshots'" in str(error)
