"""QEMU snapshots over QMP, by the two methods QEMU 7.2 offers.

* **snapshot-save / snapshot-load jobs** (what :class:`~virtrio.engine.backends.QemuInstance`
  uses): the whole machine state goes into a qcow2 image the instance owns (attached as a
  block node that no device uses, so any board can have one), in place: the QEMU process, its
  QMP, GDB and console connections and the breakpoints all stay.
* **migration to a file** (as os-autoinst does, with disk overlays): ``migrate`` to
  ``exec:cat > FILE`` saves; restoring needs a *new* QEMU started with ``-incoming defer`` and
  ``migrate-incoming``, so every connection is made again. Kept here for the benchmark
  (``benchmarks/backends.py`` measures both) and for boards whose state cannot go in qcow2.

Why the jobs won: on a small guest they restore in a few milliseconds where migration's restore
costs a process start and reconnection (tens of milliseconds, see docs/backends.md for the
figures), and they keep the instance's connections. Bare-metal boards have no disk, so the
overlays that make migration attractive for os-autoinst bring nothing here.
"""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path
from typing import Any

import trio

from virtrio.channels.qmp import QmpClient

from ._types import BackendCommandError, BackendUnavailableError

__all__ = [
    "SNAPSHOT_NODE",
    "migrate_to_file",
    "create_image",
    "incoming_from_file",
    "run_snapshot_job",
    "snapshot_drive_args",
]

#: The block node that holds the snapshots.
SNAPSHOT_NODE = "virtrio-snapshots"


def snapshot_drive_args(image: Path) -> list[str]:
    """QEMU arguments attaching ``image`` (qcow2) as the snapshot node, used by no device."""
    return [
        "-blockdev",
        f"driver=qcow2,node-name={SNAPSHOT_NODE},file.driver=file,file.filename={image}",
    ]


async def run_snapshot_job(qmp: QmpClient, command: str, tag: str, job_id: str) -> None:
    """Run ``snapshot-save``/``snapshot-load``/``snapshot-delete`` for ``tag`` and wait for
    the job to conclude (through its JOB_STATUS_CHANGE events: nothing polls).

    Raises:
        BackendCommandError: the job ended with an error (QEMU's message).
    """
    arguments: dict[str, Any] = {"job-id": job_id, "tag": tag, "devices": [SNAPSHOT_NODE]}
    if command != "snapshot-delete":
        arguments["vmstate"] = SNAPSHOT_NODE
    with qmp.events("JOB_STATUS_CHANGE") as events:
        await qmp.execute(command, arguments)
        while True:
            event = await events.receive()
            if event.data.get("id") == job_id and event.data.get("status") == "concluded":
                break
    jobs = await qmp.execute("query-jobs")
    await qmp.execute("job-dismiss", {"id": job_id})
    for job in jobs:
        if job.get("id") == job_id and job.get("error"):
            raise BackendCommandError(f"{command} {tag!r}: {job['error']}", backend="qemu")


async def migrate_to_file(qmp: QmpClient, path: Path) -> None:
    """Save the machine's state to ``path`` by migration (the machine is left in QEMU's
    ``postmigrate`` state: it can be migrated again, not resumed). A GDB client attached to
    the stub sees a stop reply it did not ask for: one more reason the instance uses jobs.

    Raises:
        BackendCommandError: the migration failed.
    """
    await qmp.execute(
        "migrate-set-capabilities", {"capabilities": [{"capability": "events", "state": True}]}
    )
    with qmp.events("MIGRATION") as events:
        if (await qmp.query_status()).running:
            await qmp.execute("stop")
        await qmp.execute("migrate", {"uri": f"exec:cat > {shlex.quote(str(path))}"})
        while True:
            status = (await events.receive()).data.get("status")
            if status == "completed":
                return
            if status in ("failed", "cancelled"):
                break
    info = await qmp.execute("query-migrate")
    raise BackendCommandError(
        f"migration to {path} failed: {info.get('error-desc', info)}", backend="qemu"
    )


async def incoming_from_file(qmp: QmpClient, path: Path) -> None:
    """Load state saved by :func:`migrate_to_file` into a QEMU started with
    ``-incoming defer`` and ``-S`` (it stays paused).

    Raises:
        BackendCommandError: the incoming migration failed.
    """
    await qmp.execute(
        "migrate-set-capabilities", {"capabilities": [{"capability": "events", "state": True}]}
    )
    with qmp.events("MIGRATION") as events:
        await qmp.execute("migrate-incoming", {"uri": f"exec:cat {shlex.quote(str(path))}"})
        while True:
            status = (await events.receive()).data.get("status")
            if status == "completed":
                break
            if status in ("failed", "cancelled"):
                raise BackendCommandError(f"incoming migration from {path} failed", backend="qemu")
    # QEMU leaves 'inmigrate' in a bottom half after the event; a round trip lets it run
    state = (await qmp.query_status()).status
    if state == "inmigrate":
        raise BackendCommandError(f"QEMU still in inmigrate after loading {path}", backend="qemu")


async def create_image(path: Path, *, qemu_img: str = "qemu-img") -> None:
    """Create the (empty, 1 MiB) qcow2 image snapshots are stored in.

    Raises:
        BackendUnavailableError: qemu-img is missing.
        BackendCommandError: qemu-img failed.
    """
    try:
        await trio.run_process(
            [qemu_img, "create", "-q", "-f", "qcow2", str(path), "1M"], capture_stderr=True
        )
    except FileNotFoundError:
        raise BackendUnavailableError(
            f"{qemu_img} not found: apt-get install qemu-utils", backend="qemu"
        ) from None
    except subprocess.CalledProcessError as exc:
        why = exc.stderr.decode(errors="replace").strip()
        raise BackendCommandError(f"qemu-img create {path} failed: {why}", backend="qemu") from None
