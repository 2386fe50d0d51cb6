"""Spice sessions kept alive: the VM's supervised handle and a manager of named sessions.

::

    async with open_spice_manager() as manager:
        manager.add("web1", "unix:/run/web1/spice.sock", password="secret")
        session = await manager.get("web1")            # waits through a reconnect
        png = await session.screenshot()

A :class:`~virtrio.channels.spice.SpiceSession` is one connection (it relinks its own
sub-channels while main is up); what reconnects a whole session lives here.
"""

from ._handle import SupervisedSpice as SupervisedSpice
from ._manager import SpiceManager as SpiceManager, open_spice_manager as open_spice_manager

__all__ = ["SpiceManager", "SupervisedSpice", "open_spice_manager"]
