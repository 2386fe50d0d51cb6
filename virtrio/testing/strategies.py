"""Hypothesis strategies for testing VMs and what drives them.

::

    from virtrio.testing.strategies import typeable_text, key_combos, byte_splits, qmp_commands

    @given(typeable_text())                    # text a US keyboard can type
    @given(key_combos())                       # "ctrl-alt-f3", "shift-a", ...
    @given(byte_splits(b"..."))                # the same bytes in arbitrary chunks
    @given(qmp_commands(schema))               # (command, arguments) typed by QEMU's own schema

``schema`` is what the live QEMU answers to ``query-qmp-schema``; :func:`check_value` checks a
reply against a command's ``ret-type`` from the same schema.
"""

from ._strategies import (
    MODIFIERS as MODIFIERS,
    TYPEABLE as TYPEABLE,
    QmpSchema as QmpSchema,
    byte_splits as byte_splits,
    check_value as check_value,
    key_combos as key_combos,
    qmp_arguments as qmp_arguments,
    qmp_commands as qmp_commands,
    scenario_steps as scenario_steps,
    typeable_text as typeable_text,
)

__all__ = [
    "MODIFIERS",
    "QmpSchema",
    "TYPEABLE",
    "byte_splits",
    "check_value",
    "key_combos",
    "qmp_arguments",
    "qmp_commands",
    "scenario_steps",
    "typeable_text",
]
