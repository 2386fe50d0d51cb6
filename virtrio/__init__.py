"""virtrio: a structured-concurrency engine on Trio for driving virtual machines.

Each VM is a nursery that owns its channel tasks (QMP, the guest agent, libvirt, virtio-serial,
Spice, multiplexed streams over vsock); the tasks talk through Trio memory channels and cancel
scopes do reconnect and backoff. Start with :func:`virtrio.nurseries.open_vm`, or open a single
channel with :func:`virtrio.channels.open_qmp` / :func:`virtrio.channels.open_qga`.
"""

from virtrio.errors import (
    ChannelUnavailableError as ChannelUnavailableError,
    CommandError as CommandError,
    ConfigError as ConfigError,
    ConnectError as ConnectError,
    ConnectionLostError as ConnectionLostError,
    LocalProtocolError as LocalProtocolError,
    ProtocolError as ProtocolError,
    VirtrioError as VirtrioError,
    VirtrioTimeoutError as VirtrioTimeoutError,
)

__version__ = "0.1.0"
