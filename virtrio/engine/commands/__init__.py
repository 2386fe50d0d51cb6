"""Subcommands of the ``virtrio`` CLI, one module each.

A module here is found by name (no central list to edit) and defines::

    def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None
        # add its parser(s); set ``run=<async function taking the Namespace, returning int>``

Keep heavy imports (libvirt, cryptography, ...) inside the run functions so ``virtrio --help``
stays fast and works without optional extras.
"""
