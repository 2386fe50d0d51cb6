"""Fleet configuration: a YAML file (seed 001 §5, extended) into attrs classes.

::

    fleet = load_fleet("fleet.yaml")        # FleetError lists every problem, file:line: path
    fleet = default_fleet(vms=2)            # the embedded default: demo guests
    schema = fleet_schema()                 # JSON Schema for editors

A file looks like::

    defaults: {connect_timeout: 10, call_timeout: 30, backoff_initial: 1, backoff_max: 60}
    hosts:
      - {id: host1, uri: "qemu+ssh://root@10.0.0.5/system"}
    vms:
      - id: web1
        host: host1                     # a libvirt domain (named web1 unless domain: says)
        tags: [web]
        channels:
          qmp: {kind: qmp}
          console: {kind: serial-console}
      - id: demo1
        qemu: {template: demo}          # launched and owned by the engine
    spice:
      vms:
        - {vm_id: web1, server_addr: 10.0.0.5, port: 5900, password: pw}
"""

from ._default import default_fleet as default_fleet, demo_channels as demo_channels
from ._dump import dump_fleet as dump_fleet, fleet_data as fleet_data
from ._load import (
    FleetError as FleetError,
    FleetIssue as FleetIssue,
    load_fleet as load_fleet,
    parse_fleet as parse_fleet,
)
from ._model import (
    ChannelConfig as ChannelConfig,
    Defaults as Defaults,
    Fleet as Fleet,
    HostConfig as HostConfig,
    QemuConfig as QemuConfig,
    SpiceConfig as SpiceConfig,
    SpiceVmConfig as SpiceVmConfig,
    VmConfig as VmConfig,
)
from ._schema import fleet_schema as fleet_schema

__all__ = [
    "ChannelConfig",
    "Defaults",
    "Fleet",
    "FleetError",
    "FleetIssue",
    "HostConfig",
    "QemuConfig",
    "SpiceConfig",
    "SpiceVmConfig",
    "VmConfig",
    "default_fleet",
    "demo_channels",
    "dump_fleet",
    "fleet_data",
    "fleet_schema",
    "load_fleet",
    "parse_fleet",
]
