"""FAKES of Renode and SkyEye for the backend adapters' tests: neither program is in any
registry this project can reach. Each fake speaks the real program's documented interface
(Renode's Robot Framework XML-RPC remote and monitor commands; SkyEye's command line and its
GDB server on port 12345) and runs the guest on a real QEMU behind the scenes, so the GDB and
UART traffic the adapters see is real. They are not Renode or SkyEye: passing against them
proves the adapters speak those interfaces as documented, nothing more."""

from pathlib import Path

FAKES = Path(__file__).parent
RENODE = FAKES / "renode"
SKYEYE = FAKES / "skyeye"
