"""Wire protocols: each a sans-I/O core under a thin Trio adapter (``open_<protocol>``)."""

from ._addresses import (
    VMADDR_CID_ANY as VMADDR_CID_ANY,
    VMADDR_CID_HOST as VMADDR_CID_HOST,
    VMADDR_CID_LOCAL as VMADDR_CID_LOCAL,
    Address as Address,
    open_listeners as open_listeners,
    open_stream as open_stream,
    parse_address as parse_address,
)
from ._serving import (
    ServerStatistics as ServerStatistics,
    StreamServer as StreamServer,
    bound_address as bound_address,
    serve_streams as serve_streams,
)
