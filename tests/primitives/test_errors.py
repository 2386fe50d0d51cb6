"""The exception rules every layer shares: the one group collapser and per-receiver copies."""

from __future__ import annotations

import pytest
import trio

from virtrio.errors import ConnectError, ConnectionLostError
from virtrio.primitives import collapse_groups, fresh_error, open_service_nursery


async def test_one_real_error_comes_out_bare_with_its_cause() -> None:
    cause = OSError(111, "Connection refused")

    async def fail() -> None:
        raise ConnectError("cannot connect", address="unix:/x") from cause

    with pytest.raises(ConnectError) as info:
        async with open_service_nursery() as nursery:
            nursery.start_soon(fail)
    assert info.value.__cause__ is cause  # the cause survives collapsing


async def test_cancellations_beside_the_real_error_do_not_count() -> None:
    with pytest.raises(KeyError, match="mine"), collapse_groups():
        raise BaseExceptionGroup(
            "", [trio.Cancelled._create(), ExceptionGroup("", [KeyError("mine")])]
        )


async def test_several_real_errors_stay_a_group() -> None:
    with pytest.raises(ExceptionGroup) as info, collapse_groups():
        raise ExceptionGroup("", [KeyError("a"), ExceptionGroup("", [ValueError("b")])])
    assert len(info.value.exceptions) == 2


async def test_only_cancellations_one_is_raised_bare_several_stay_a_group() -> None:
    with pytest.raises(trio.Cancelled), collapse_groups():
        raise BaseExceptionGroup("", [trio.Cancelled._create()])
    with pytest.raises(BaseExceptionGroup), collapse_groups():
        raise BaseExceptionGroup("", [trio.Cancelled._create(), trio.Cancelled._create()])


def test_a_fresh_error_is_equal_but_its_own() -> None:
    original = ConnectError("cannot connect", address="unix:/x")
    original.add_note("while starting vm1")
    copy = fresh_error(original)
    assert copy is not original
    assert type(copy) is ConnectError
    assert str(copy) == str(original)
    assert copy.address == "unix:/x"
    assert copy.__notes__ == ["while starting vm1"]
    os_error = fresh_error(FileNotFoundError(2, "No such file", "/run/x"))
    assert (os_error.errno, os_error.filename, str(os_error)) == (
        2,
        "/run/x",
        "[Errno 2] No such file: '/run/x'",
    )
    lost = fresh_error(ConnectionLostError("gone"))
    assert lost.address is None
    assert str(lost) == "gone"
