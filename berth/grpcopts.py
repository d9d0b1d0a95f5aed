"""gRPC message-size limits for every berth server and channel, in one place.

Used by controller/server.py, agent/main.py, clusterctl/client.py, controller/proxy.py
and controller/images.py. gRPC's own defaults are a 4 MiB receive limit and no send
limit; berth states both, on both ends:

* a **request** (clusterctl to controller, controller to agent) is at most
  ``MAX_REQUEST`` (4 MiB): a manifest, an exec argv, one 1 MiB image frame. A bigger
  one is refused with RESOURCE_EXHAUSTED before the handler sees it;
* a **response** message (a ``get`` listing, one exec/logs/image frame) is at most
  ``MAX_RESPONSE`` (16 MiB), so ``get containers`` of a large cluster still fits.

Streams are bounded per message, not per stream: image archives travel as 1 MiB
frames, exec output and log lines in frames far below the limit.
"""

from __future__ import annotations

MAX_REQUEST = 4 << 20
MAX_RESPONSE = 16 << 20

Options = list[tuple[str, int]]


def server_options() -> Options:
    """Options for ``grpc.aio.server``: receive requests up to 4 MiB, send up to 16 MiB."""
    return [
        ("grpc.max_receive_message_length", MAX_REQUEST),
        ("grpc.max_send_message_length", MAX_RESPONSE),
    ]


def channel_options() -> Options:
    """Options for a client channel: send requests up to 4 MiB, receive up to 16 MiB."""
    return [
        ("grpc.max_send_message_length", MAX_REQUEST),
        ("grpc.max_receive_message_length", MAX_RESPONSE),
    ]
