"""What every layer does with an exception: tell a transient one from a permanent one, hand
each receiver its own instance, and take the one real error out of a nursery's group."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TypeVar

import trio

from virtrio.errors import PermanentError, VirtrioError

__all__ = ["collapse_groups", "fresh_error", "is_transient"]

E = TypeVar("E", bound=BaseException)

#: Errors outside virtrio's hierarchy that a lost or refused connection raises.
_TRANSIENT_BUILTINS = (OSError, EOFError, TimeoutError, trio.BrokenResourceError, trio.TooSlowError)


def is_transient(error: BaseException) -> bool:
    """Whether a channel that failed with ``error`` may succeed on a later attempt.

    The rule a :class:`~virtrio.primitives.Supervisor` retries by (pass ``transient=`` to it
    for another one):

    * permanent: a :class:`~virtrio.errors.PermanentError` (a ``ConfigError``, an
      ``AuthenticationError``, an ``UnsupportedVersionError``), a :class:`PermissionError`
      (also as the ``__cause__`` of a :class:`~virtrio.errors.ConnectError`: a socket we may
      not open), and any exception outside virtrio's hierarchy and the OS's (a bug in our
      code: ``TypeError``, ``AssertionError``, ...);
    * transient: every other :class:`~virtrio.errors.VirtrioError` (refused, lost, timed out,
      a peer that broke the protocol and may be restarted) and the OS's connection errors
      (``OSError``, ``EOFError``, ``TimeoutError``, ``trio.BrokenResourceError``);
    * a group is transient when every error in it is.
    """
    if isinstance(error, BaseExceptionGroup):
        return all(is_transient(e) for e in error.exceptions)
    if isinstance(error, PermanentError | PermissionError):
        return False
    if isinstance(error, VirtrioError):
        return not isinstance(error.__cause__, PermissionError)
    return isinstance(error, _TRANSIENT_BUILTINS) and not isinstance(error, trio.Cancelled)


def fresh_error(error: E) -> E:
    """A new instance equal to ``error`` (same type, arguments, attributes, cause and
    traceback so far), for raising in one more task.

    Raising one instance in several tasks chains their tracebacks into each other (every raise
    prepends its frames to the one ``__traceback__``); a copy per receiver keeps each one's
    own. ``__init__`` is not called again (many take keyword-only arguments).
    """
    cls = type(error)
    new = cls.__new__(cls, *error.args)
    new.args = error.args
    if hasattr(error, "__dict__"):
        new.__dict__.update(error.__dict__)
    if isinstance(error, OSError):
        # C-level fields; one set to None would change str() (OSError tests for presence)
        for field in ("errno", "strerror", "filename", "filename2"):
            if getattr(error, field) is not None:
                setattr(new, field, getattr(error, field))
    new.__cause__ = error.__cause__
    new.__context__ = error.__context__
    new.__suppress_context__ = error.__suppress_context__
    return new.with_traceback(error.__traceback__)


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    out: list[BaseException] = []
    for exc in group.exceptions:
        out.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return out


@contextmanager
def collapse_groups() -> Iterator[None]:
    """Raise the one real error out of an ``ExceptionGroup`` leaving the block.

    Trio wraps every error leaving a nursery in a group, the caller's own exception from the
    body of ``async with open_x() as x:`` included. The semantics, the one rule of virtrio:

    * the leaves of the (nested) group are looked at; :class:`trio.Cancelled` leaves do not
      count when there is a real error beside them (the cancellation was a consequence);
    * exactly one real error: it is raised as itself, its ``__cause__`` kept;
    * only cancellations: one is raised as itself, several stay a group;
    * several real errors stay the group they were (independent failures are not hidden).
    """
    try:
        yield
    except BaseExceptionGroup as group:
        leaves = _leaves(group)
        real = [e for e in leaves if not isinstance(e, trio.Cancelled)]
        if len(real) == 1:
            raise real[0] from real[0].__cause__
        if not real and len(leaves) == 1:
            raise leaves[0] from leaves[0].__cause__
        raise
