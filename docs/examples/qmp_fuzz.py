"""Fuzz QEMU's safe ``query-*`` commands with arguments typed by QEMU's own schema.

Every command the live QEMU lists in ``query-qmp-schema`` whose name starts with ``query-`` is
called with arguments hypothesis builds from the command's ``arg-type``; each reply must fit the
command's ``ret-type`` exactly (members, types, enums), and QEMU may refuse arguments only with
a QMP error reply (never a dropped connection or a malformed reply). Run it::

    python docs/examples/qmp_fuzz.py            # starts a `-machine none` QEMU of its own

It prints how many calls were made, answered and refused per command.
"""

from __future__ import annotations

import collections
from typing import Any

import trio
from hypothesis import given, settings

from virtrio.channels.qmp import QmpCommandError, open_qmp
from virtrio.testing.strategies import QmpSchema, check_value, qmp_commands

#: query-* commands left out: none are unsafe, but these answer with host-dependent blobs
#: hypothesis gains nothing from.
SKIP = frozenset({"query-qmp-schema"})
#: QEMU's error classes (QapiErrorClass in qapi/error.json): a refusal must be one of them.
ERROR_CLASSES = frozenset(
    {"GenericError", "CommandNotFound", "DeviceNotActive", "DeviceNotFound", "KVMMissingCap"}
)


async def fuzz(qmp_address: Any, *, max_examples: int = 60) -> dict[str, collections.Counter[str]]:
    """Fuzz the QEMU at ``qmp_address``; returns per command the counts of ``ok`` and
    ``refused`` calls. Raises AssertionError (hypothesis's shrunk example) on a bad reply."""
    async with open_qmp(qmp_address, call_timeout=10) as qmp:
        schema = QmpSchema(await qmp.execute("query-qmp-schema"))
        names = schema.commands(lambda n: n.startswith("query-") and n not in SKIP)
        seen: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)

        async def call(name: str, arguments: dict[str, Any]) -> tuple[str, Any]:
            try:
                return "ok", await qmp.execute(name, arguments or None)
            except QmpCommandError as exc:
                return "refused", exc.error_class

        @settings(max_examples=max_examples, deadline=None, database=None)
        @given(qmp_commands(schema, names))
        def property_replies_fit_the_schema(command: tuple[str, dict[str, Any]]) -> None:
            name, arguments = command
            outcome, reply = trio.from_thread.run(call, name, arguments)
            seen[name][outcome] += 1
            if outcome == "ok":
                ret_type = schema.command(name)["ret-type"]
                problems = check_value(schema, ret_type, reply)
                assert not problems, (
                    f"{name} {arguments}: reply does not fit {ret_type}: {problems}"
                )
            else:
                assert reply in ERROR_CLASSES, f"{name} {arguments}: error class {reply}"

        await trio.to_thread.run_sync(property_replies_fit_the_schema)
        # the connection survived every call
        assert (await qmp.query_status()).status
        return dict(seen)


async def main() -> None:
    from virtrio.engine.guest import QemuMachine, open_qemu

    async with open_qemu(QemuMachine(machine="none", agent=False, console_log=False)) as qemu:
        seen = await fuzz(qemu.qmp_address)
    for name, counts in sorted(seen.items()):
        print(f"{name:40} ok {counts['ok']:3}  refused {counts['refused']:3}")
    print(f"{sum(sum(c.values()) for c in seen.values())} calls, {len(seen)} commands, no fault")


if __name__ == "__main__":
    trio.run(main)
