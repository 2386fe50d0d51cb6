"""Hatchling build hook: compile xtransport's C loops (``virtrio/channels/xtransfer/_speedups.c``).

The extension is optional: without a C compiler (or Python's headers) the build warns and
virtrio uses the same loops in Python (``virtrio/channels/xtransfer/_loops.py``).
``VIRTRIO_REQUIRE_SPEEDUPS=1`` turns that warning into a failed build (``make setup`` sets it:
the test suite checks the compiled loops against the Python ones).

The module is built next to its source, where an editable install imports it, and a wheel
takes it from there (it is git-ignored, so it is included explicitly).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

SOURCE = Path("virtrio/channels/xtransfer/_speedups.c")


class SpeedupsBuildHook(BuildHookInterface):  # type: ignore[type-arg]
    """Compiles ``_speedups.c`` into a module for the interpreter running the build."""

    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel":
            return
        source = Path(self.root, SOURCE)
        target = source.with_name("_speedups" + sysconfig.get_config_var("EXT_SUFFIX"))
        command = [
            *shlex.split(sysconfig.get_config_var("CC") or "cc"),
            "-O2",
            "-fPIC",
            "-shared",
            "-Wall",
            f"-I{sysconfig.get_paths()['include']}",
            str(source),
            "-o",
            str(target),
        ]
        try:
            subprocess.run(command, check=True, capture_output=True, text=True)
        except (OSError, subprocess.CalledProcessError) as exc:
            detail = getattr(exc, "stderr", None) or str(exc)
            message = f"xtransport's C loops were not built ({shlex.join(command)}): {detail}"
            if os.environ.get("VIRTRIO_REQUIRE_SPEEDUPS"):
                raise RuntimeError(message) from exc
            print(f"warning: {message}; the Python loops will be used", file=sys.stderr)
            return
        build_data["pure_python"] = False
        build_data["infer_tag"] = True
        if version != "editable":  # an editable install imports it where it lies
            build_data["force_include"][str(target)] = str(target.relative_to(self.root))
